//! The host side of component dependencies that do not inherit a grant: the composed
//! component imports those capabilities under `wisp-deny-…` names (see `wisp_compose`), and
//! every function there answers with a refusal the guest can handle: an error variant that
//! says "not permitted" where the function returns a `result`, nothing where it returns a
//! list or an option (no environment variables, no preopened directories). A function
//! with no way to say no traps, naming the interface.

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Linker, ResourceType, Type, Val};

use crate::EngineError;
use crate::host::Host;

/// Error cases picked for a refusal, most fitting first: `access-denied` (key-value,
/// SQLite, sockets), `undefined` (variables), then the free-text cases Spin's own refusals
/// use (`other`, `internal-error` for HTTP, `connection-failed`).
const REFUSAL_CASES: &[&str] = &[
    "access-denied",
    "undefined",
    "other",
    "internal-error",
    "connection-failed",
    "HTTP-request-denied",
    "model-not-supported",
    "upstream",
];

/// Whether the component imports anything under the denied prefix.
pub(crate) fn has_denied_imports(component: &Component) -> bool {
    component
        .component_type()
        .imports(component.engine())
        .any(|(name, _)| wisp_compose::denied_interface(name).is_some())
}

/// Defines every `wisp-deny-…` import of `component` in `linker` as refusals.
pub(crate) fn define_refusals(
    linker: &mut Linker<Host>,
    component: &Component,
    component_id: &str,
) -> Result<(), EngineError> {
    let engine = component.engine();
    let failed = |e: wasmtime::Error| EngineError::Invalid {
        component: component_id.to_owned(),
        message: format!("cannot refuse a dependency's capability imports: {e:#}"),
    };
    let component_type = component.component_type();
    // Resources the refused interfaces only use (`outgoing-request` in
    // `outgoing-handler`) belong to the host's own interfaces: they are not defined again.
    let host_resources: Vec<ResourceType> = component_type
        .imports(engine)
        .filter(|(name, _)| wisp_compose::denied_interface(name).is_none())
        .filter_map(|(_, import)| match import.ty {
            ComponentItem::ComponentInstance(instance) => Some(
                instance
                    .exports(engine)
                    .filter_map(|(_, item)| match item.ty {
                        ComponentItem::Resource(resource) => Some(resource),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    for (name, import) in component_type.imports(engine) {
        let Some(interface) = wisp_compose::denied_interface(name) else {
            continue;
        };
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            return Err(EngineError::Invalid {
                component: component_id.to_owned(),
                message: format!("its import `{name}` is not an interface"),
            });
        };
        let unversioned = interface.split('@').next().unwrap_or(interface).to_owned();
        let mut linker_instance = linker.instance(name).map_err(failed)?;
        for (export, item) in instance.exports(engine) {
            match item.ty {
                ComponentItem::ComponentFunc(func) => {
                    let refusal = Refusal {
                        component: component_id.to_owned(),
                        function: format!("{interface}#{export}"),
                        message: format!("\"{unversioned}\" is not permitted"),
                    };
                    if func.async_() {
                        linker_instance
                            .func_new_concurrent(export, move |_, ty, _, results| {
                                let outcome = refusal.answer(&ty, results);
                                Box::pin(async move { outcome })
                            })
                            .map_err(failed)?;
                    } else {
                        linker_instance
                            .func_new(export, move |_, ty, _, results| {
                                refusal.answer(&ty, results)
                            })
                            .map_err(failed)?;
                    }
                }
                ComponentItem::Resource(resource) if host_resources.contains(&resource) => {}
                // Never created: every function that would hand one out refuses.
                ComponentItem::Resource(_) => linker_instance
                    .resource(export, ResourceType::host::<Refused>(), |_, _| Ok(()))
                    .map_err(failed)?,
                _ => {}
            }
        }
    }
    Ok(())
}

/// The host type of resources in refused interfaces.
struct Refused;

/// One refused function.
struct Refusal {
    component: String,
    function: String,
    message: String,
}

impl Refusal {
    fn answer(&self, ty: &ComponentFunc, results: &mut [Val]) -> wasmtime::Result<()> {
        tracing::warn!(
            "component `{}`: a dependency called {}, which it does not inherit; refused",
            self.component,
            self.function
        );
        for (slot, result) in results.iter_mut().zip(ty.results()) {
            *slot = refusal_value(&result, &self.message).ok_or_else(|| {
                wasmtime::format_err!(
                    "a component dependency called {}, which it was not granted; \
                     give it `inherit_configuration` for that capability if it needs it",
                    self.function
                )
            })?;
        }
        Ok(())
    }
}

/// The "no" a function of this result type can give, if any.
fn refusal_value(ty: &Type, message: &str) -> Option<Val> {
    match ty {
        Type::Result(result) => {
            let error = match result.err() {
                None => None,
                Some(error) => Some(Box::new(error_value(&error, message)?)),
            };
            Some(Val::Result(Err(error)))
        }
        Type::List(_) => Some(Val::List(Vec::new())),
        Type::Option(_) => Some(Val::Option(None)),
        _ => None,
    }
}

/// An error value saying "not permitted" in the error type's own terms.
fn error_value(ty: &Type, message: &str) -> Option<Val> {
    match ty {
        Type::String => Some(Val::String(message.to_owned())),
        Type::Enum(cases) => {
            let names: Vec<&str> = cases.names().collect();
            let name = REFUSAL_CASES
                .iter()
                .find(|case| names.contains(case))
                .copied()?;
            Some(Val::Enum(name.to_owned()))
        }
        Type::Variant(variant) => {
            let cases: Vec<_> = variant.cases().collect();
            REFUSAL_CASES.iter().find_map(|wanted| {
                let case = cases.iter().find(|case| case.name == *wanted)?;
                let payload = match &case.ty {
                    None => None,
                    Some(payload) => Some(Box::new(payload_value(payload, message)?)),
                };
                Some(Val::Variant(case.name.to_owned(), payload))
            })
        }
        _ => None,
    }
}

/// A case payload carrying the message: a string, or an optional string.
fn payload_value(ty: &Type, message: &str) -> Option<Val> {
    match ty {
        Type::String => Some(Val::String(message.to_owned())),
        Type::Option(option) if matches!(option.ty(), Type::String) => {
            Some(Val::Option(Some(Box::new(Val::String(message.to_owned())))))
        }
        _ => None,
    }
}
