//! `[[trigger.http]]`, `[[trigger.redis]]` and `[[trigger.cron]]`, and the components they name.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use indexmap::IndexMap;
use toml::Spanned;

use crate::error::ManifestError;
use crate::model::{
    Component, CronTrigger, Dependency, HttpExecutor, HttpRoute, HttpTrigger, RedisTrigger,
    StaticResponse, Variable, WAGI_DEFAULT_ARGV,
};
use crate::raw::{
    RawComponentRef, RawCronTrigger, RawExecutor, RawHttpTrigger, RawRedisTrigger, RawRoute,
    RawStaticResponse, RawTriggers,
};
use crate::rules;

use super::Validator;

impl Validator<'_> {
    pub(super) fn triggers(
        &mut self,
        raw: RawTriggers,
        components: &mut IndexMap<String, Component>,
        variables: &IndexMap<String, Variable>,
    ) -> Result<Triggers, ManifestError> {
        if let Some(kind) = raw.unsupported.first() {
            return Err(self.unsupported_trigger(kind, "the [[trigger.{}]] tables"));
        }
        if raw.http.is_empty() && raw.redis.is_empty() && raw.cron.is_empty() {
            return Err(self.error(
                0..0,
                "the app has no triggers; add a [[trigger.http]] table so that requests reach a component",
                "for example `[[trigger.http]]` with `route = \"/...\"` and `component = \"<component id>\"` \
                 (or a [[trigger.redis]] or [[trigger.cron]] table)",
            ));
        }

        let named: Vec<String> = components.keys().cloned().collect();
        let mut state = TriggerState::default();
        let mut triggers = Triggers::default();
        let mut middleware = Vec::new();
        for trigger in raw.http {
            let (trigger, chain) =
                self.http_trigger(trigger, &named, components, variables, &mut state)?;
            if !chain.is_empty() {
                middleware.push((triggers.http.len(), chain));
            }
            triggers.http.push(trigger);
        }
        for trigger in raw.redis {
            let trigger = self.redis_trigger(trigger, &named, components, variables, &mut state)?;
            triggers.redis.push(trigger);
        }
        for trigger in raw.cron {
            let trigger = self.cron_trigger(trigger, &named, components, variables, &mut state)?;
            triggers.cron.push(trigger);
        }
        triggers.copies = attach_middleware(&mut triggers, components, middleware);
        Ok(triggers)
    }

    fn unique_trigger_id(
        &self,
        id: Option<&Spanned<String>>,
        state: &mut TriggerState,
    ) -> Result<(), ManifestError> {
        if let Some(id) = id
            && !state.ids.insert(id.get_ref().clone())
        {
            return Err(self.error(
                id.span(),
                format!("duplicate trigger id `{}`", id.get_ref()),
                "trigger ids must be unique; rename or remove one of them",
            ));
        }
        Ok(())
    }

    /// The `component` of a non-HTTP trigger, which is required.
    #[allow(clippy::too_many_arguments)]
    fn required_component(
        &mut self,
        component: Option<Spanned<RawComponentRef>>,
        trigger_span: Range<usize>,
        table: &str,
        trigger_id: Option<&Spanned<String>>,
        named: &[String],
        components: &mut IndexMap<String, Component>,
        variables: &IndexMap<String, Variable>,
        state: &mut TriggerState,
    ) -> Result<String, ManifestError> {
        match component {
            Some(component) => {
                self.component_ref(component, trigger_id, named, components, variables, state)
            }
            None => Err(self.error(
                trigger_span,
                format!("this {table} has no `component`"),
                "add `component = \"<component id>\"` naming a [component.<id>] table",
            )),
        }
    }

    fn redis_trigger(
        &mut self,
        trigger: Spanned<RawRedisTrigger>,
        named: &[String],
        components: &mut IndexMap<String, Component>,
        variables: &IndexMap<String, Variable>,
        state: &mut TriggerState,
    ) -> Result<RedisTrigger, ManifestError> {
        let trigger_span = trigger.span();
        let trigger = trigger.into_inner();
        self.unique_trigger_id(trigger.id.as_ref(), state)?;
        if let Some(executor) = &trigger.executor {
            self.event_executor(executor)?;
        }
        let component = self.required_component(
            trigger.component,
            trigger_span.clone(),
            "[[trigger.redis]]",
            trigger.id.as_ref(),
            named,
            components,
            variables,
            state,
        )?;
        let channel = match trigger.channel {
            Some(channel) if !channel.get_ref().trim().is_empty() => channel,
            Some(channel) => {
                return Err(self.error(
                    channel.span(),
                    "the redis trigger's `channel` is empty",
                    "write the channel to subscribe to, e.g. `channel = \"messages\"`",
                ));
            }
            None => {
                return Err(self.error(
                    trigger_span,
                    "this [[trigger.redis]] has no `channel`",
                    "add `channel = \"<channel name>\"`, the Redis pub/sub channel whose messages run the component",
                ));
            }
        };
        self.check_references("channel", &channel, variables)?;
        let line = self.src.line(channel.span().start);
        let address = match trigger.address.as_ref().or(self.redis_address.as_ref()) {
            Some(address) => address,
            None => {
                return Err(self.error(
                    trigger_span,
                    "this [[trigger.redis]] has no server address",
                    "add `address = \"redis://host:6379\"` to the trigger, or to an \
                     [application.trigger.redis] table for every redis trigger",
                ));
            }
        };
        self.check_address_template(address, variables)?;
        Ok(RedisTrigger {
            id: trigger.id.map(Spanned::into_inner),
            component,
            channel: channel.into_inner(),
            address: address.get_ref().clone(),
            line,
        })
    }

    /// `{{ variable }}` references in a redis trigger field name declared variables;
    /// returns how many there are.
    fn check_references(
        &self,
        field: &str,
        value: &Spanned<String>,
        variables: &IndexMap<String, Variable>,
    ) -> Result<usize, ManifestError> {
        let references = rules::template_references(value.get_ref()).map_err(|_| {
            self.error(
                value.span(),
                format!("the redis {field} has a malformed `{{{{ variable }}}}` reference"),
                "write references to application variables as `{{ name }}`",
            )
        })?;
        if let Some(undeclared) = references.iter().find(|r| !variables.contains_key(**r)) {
            return Err(self.error(
                value.span(),
                format!("the redis {field} refers to undeclared variable `{undeclared}`"),
                format!(
                    "declare it under [variables], e.g. `{undeclared} = {{ default = \"...\" }}`"
                ),
            ));
        }
        Ok(references.len())
    }

    /// A redis `address`: `redis://...` or `rediss://...`, possibly with `{{ variable }}` references.
    fn check_address_template(
        &self,
        address: &Spanned<String>,
        variables: &IndexMap<String, Variable>,
    ) -> Result<(), ManifestError> {
        let text = address.get_ref();
        let references = self.check_references("address", address, variables)?;
        if references == 0 && !text.starts_with("redis://") && !text.starts_with("rediss://") {
            return Err(self.error(
                address.span(),
                format!("`{text}` is not a redis address"),
                "write it as `redis://[user:password@]host[:port][/db]` (`rediss://` for TLS)",
            ));
        }
        Ok(())
    }

    fn cron_trigger(
        &mut self,
        trigger: Spanned<RawCronTrigger>,
        named: &[String],
        components: &mut IndexMap<String, Component>,
        variables: &IndexMap<String, Variable>,
        state: &mut TriggerState,
    ) -> Result<CronTrigger, ManifestError> {
        let trigger_span = trigger.span();
        let trigger = trigger.into_inner();
        self.unique_trigger_id(trigger.id.as_ref(), state)?;
        let component = self.required_component(
            trigger.component,
            trigger_span.clone(),
            "[[trigger.cron]]",
            trigger.id.as_ref(),
            named,
            components,
            variables,
            state,
        )?;
        let Some(expression) = trigger.cron_expression else {
            return Err(self.error(
                trigger_span,
                "this [[trigger.cron]] has no `cron_expression`",
                "add a schedule such as `cron_expression = \"0 */5 * * * *\"` (every five minutes)",
            ));
        };
        if let Err(reason) = rules::check_cron_expression(expression.get_ref()) {
            return Err(self.error(
                expression.span(),
                format!(
                    "invalid cron_expression `{}`: {reason}",
                    expression.get_ref()
                ),
                "write six or seven fields: seconds minutes hours day-of-month month \
                 day-of-week [year], e.g. `\"*/10 * * * * *\"` for every ten seconds",
            ));
        }
        let line = self.src.line(expression.span().start);
        Ok(CronTrigger {
            id: trigger.id.map(Spanned::into_inner),
            component,
            cron_expression: expression.into_inner(),
            allow_overlap: trigger.allow_overlap.unwrap_or(false),
            line,
        })
    }

    fn http_trigger(
        &mut self,
        trigger: Spanned<RawHttpTrigger>,
        named: &[String],
        components: &mut IndexMap<String, Component>,
        variables: &IndexMap<String, Variable>,
        state: &mut TriggerState,
    ) -> Result<(HttpTrigger, Vec<Dependency>), ManifestError> {
        let trigger_span = trigger.span();
        let trigger = trigger.into_inner();
        self.unique_trigger_id(trigger.id.as_ref(), state)?;

        let route_span = trigger.route.span();
        let line = self.src.line(route_span.start);
        let route = self.route(trigger.route, line, &mut state.routes)?;

        let executor = match &trigger.executor {
            Some(executor) => self.executor(executor)?,
            None => HttpExecutor::Http,
        };

        let (component, static_response) = match (trigger.component, trigger.static_response) {
            (Some(_), Some(response)) => {
                return Err(self.error(
                    response.span(),
                    "a trigger cannot have both `component` and `static_response`",
                    "remove `static_response` to run the component, or remove `component` to \
                     always send the static response",
                ));
            }
            (None, None) => {
                return Err(self.error(
                    trigger_span,
                    "this trigger has neither `component` nor `static_response`",
                    "add `component = \"<component id>\"` naming a [component.<id>] table, or \
                     `static_response = { status_code = 200, body = \"...\" }`",
                ));
            }
            (Some(component), None) => {
                let id = self.component_ref(
                    component,
                    trigger.id.as_ref(),
                    named,
                    components,
                    variables,
                    state,
                )?;
                (Some(id), None)
            }
            (None, Some(response)) => (None, Some(self.static_response(response)?)),
        };

        if let Some(size) = &trigger.max_request_body_size
            && *size.get_ref() == 0
        {
            return Err(self.error(
                size.span(),
                "`max_request_body_size` must be at least 1 byte",
                "give the largest body this route accepts in bytes, e.g. \
                 `max_request_body_size = 1048576` for 1 MiB, or remove it for the server's default",
            ));
        }

        let middleware = match &component {
            _ if trigger.dependencies.is_empty() => Vec::new(),
            Some(id) if executor == HttpExecutor::Http => {
                self.trigger_middleware(id, trigger.dependencies, components)?
            }
            _ => {
                let span = trigger
                    .dependencies
                    .keys()
                    .next()
                    .map_or(trigger_span, |k| k.span());
                return Err(self.error(
                    span,
                    "middleware needs a component that handles requests through `wasi:http`",
                    "remove `dependencies`: a static response or a wagi component cannot be \
                     wrapped in middleware",
                ));
            }
        };

        let trigger = HttpTrigger {
            id: trigger.id.map(Spanned::into_inner),
            route,
            component,
            static_response,
            executor,
            max_request_body_size: trigger.max_request_body_size.map(Spanned::into_inner),
            line,
        };
        Ok((trigger, middleware))
    }

    fn route(
        &self,
        route: Spanned<RawRoute>,
        line: usize,
        seen: &mut HashMap<String, (String, usize)>,
    ) -> Result<HttpRoute, ManifestError> {
        let span = route.span();
        match route.into_inner() {
            RawRoute::Private(private) => {
                if !private.private {
                    return Err(self.error(
                        span,
                        "`route = { private = false }` is not a route",
                        "use `route = { private = true }` for a component reached only through \
                         service chaining, or a path such as `route = \"/api/...\"`",
                    ));
                }
                Ok(HttpRoute::Private)
            }
            RawRoute::Path(path) => {
                let key = rules::route_key(&path)
                    .map_err(|(message, hint)| self.error(span.clone(), message, hint))?;
                if let Some((first, first_line)) = seen.get(&key) {
                    return Err(self.error(
                        span,
                        format!(
                            "route `{path}` collides with route `{first}` of the trigger on line {first_line}"
                        ),
                        "each route may be served by one trigger only (parameter names and \
                         trailing slashes do not make routes distinct); change or remove one of them",
                    ));
                }
                seen.insert(key, (path.clone(), line));
                Ok(HttpRoute::Path(path))
            }
        }
    }

    /// An HTTP trigger's `executor`: `spin` (or `http`, as Spin's lock files write it) or
    /// `wagi`.
    fn executor(&self, executor: &RawExecutor) -> Result<HttpExecutor, ManifestError> {
        match executor.kind.get_ref().as_str() {
            "spin" | "http" => {
                let wagi_field = [
                    ("argv", &executor.argv),
                    ("entrypoint", &executor.entrypoint),
                ]
                .into_iter()
                .find_map(|(name, value)| value.as_ref().map(|v| (name, v.span())));
                match wagi_field {
                    Some((name, span)) => Err(self.error(
                        span,
                        format!("`{name}` only applies to the wagi executor"),
                        format!("remove `{name}` from `executor`"),
                    )),
                    None => Ok(HttpExecutor::Http),
                }
            }
            "wagi" => {
                if let Some(entrypoint) = &executor.entrypoint
                    && entrypoint.get_ref() != "_start"
                {
                    return Err(self.error(
                        entrypoint.span(),
                        format!(
                            "a wagi component is started at `_start`, not `{}`",
                            entrypoint.get_ref()
                        ),
                        "remove `entrypoint` (it is deprecated) and build the module with its \
                         handler in `main`",
                    ));
                }
                let argv = match &executor.argv {
                    Some(argv) if argv.get_ref().trim().is_empty() => {
                        return Err(self.error(
                            argv.span(),
                            "`argv` is empty",
                            "remove `argv` for the default `\"${SCRIPT_NAME} ${ARGS}\"`, or give \
                             the command line, e.g. `argv = \"${SCRIPT_NAME} -v ${ARGS}\"`",
                        ));
                    }
                    Some(argv) => argv.get_ref().clone(),
                    None => WAGI_DEFAULT_ARGV.to_owned(),
                };
                Ok(HttpExecutor::Wagi { argv })
            }
            other => Err(self.error(
                executor.kind.span(),
                format!("unknown executor type `{other}`"),
                "remove `executor` to use the default, or write `executor = { type = \"spin\" }` \
                 (a wasi:http component) or `{ type = \"wagi\" }` (a CGI-style WASI command)",
            )),
        }
    }

    /// The `executor` of a Redis or cron trigger: only the default one exists.
    fn event_executor(&self, executor: &RawExecutor) -> Result<(), ManifestError> {
        match self.executor(executor)? {
            HttpExecutor::Http => Ok(()),
            HttpExecutor::Wagi { .. } => Err(self.error(
                executor.kind.span(),
                "the wagi executor serves HTTP triggers only",
                "remove `executor` from this trigger",
            )),
        }
    }

    fn component_ref(
        &mut self,
        component: Spanned<RawComponentRef>,
        trigger_id: Option<&Spanned<String>>,
        named: &[String],
        components: &mut IndexMap<String, Component>,
        variables: &IndexMap<String, Variable>,
        state: &mut TriggerState,
    ) -> Result<String, ManifestError> {
        let span = component.span();
        match component.into_inner() {
            RawComponentRef::Id(id) => {
                if named.contains(&id) {
                    return Ok(id);
                }
                let hint = if named.is_empty() {
                    format!(
                        "no components are defined; add a [component.{id}] table with `source = \"...\"`"
                    )
                } else {
                    let list: Vec<String> = named.iter().map(|id| format!("`{id}`")).collect();
                    format!(
                        "defined components: {}; fix the name or add a [component.{id}] table",
                        list.join(", ")
                    )
                };
                Err(self.error(span, format!("component `{id}` is not defined"), hint))
            }
            RawComponentRef::Inline(raw) => {
                let (id, id_span) = match trigger_id {
                    Some(trigger_id) => {
                        if !rules::is_kebab_id(trigger_id.get_ref()) {
                            return Err(self.error(
                                trigger_id.span(),
                                format!(
                                    "trigger id `{}` is not a valid component id",
                                    trigger_id.get_ref()
                                ),
                                "an inline component takes its trigger's `id` as component id, \
                                 and component ids are kebab-case, e.g. `my-component`",
                            ));
                        }
                        (trigger_id.get_ref().clone(), trigger_id.span())
                    }
                    None => {
                        state.generated += 1;
                        (format!("inline-component-{}", state.generated), span)
                    }
                };
                if components.contains_key(&id) {
                    let other = if named.contains(&id) {
                        format!("[component.{id}]")
                    } else {
                        "the inline component of another trigger".to_owned()
                    };
                    let hint = if trigger_id.is_some() {
                        format!(
                            "an inline component takes its trigger's `id` as component id; \
                             rename the trigger or {other}"
                        )
                    } else {
                        format!(
                            "set an `id` on this trigger to name its inline component, or \
                             rename {other}"
                        )
                    };
                    return Err(self.error(
                        id_span,
                        format!("inline component id `{id}` clashes with {other}"),
                        hint,
                    ));
                }
                let component = self.component(id.clone(), *raw, variables)?;
                components.insert(id.clone(), component);
                Ok(id)
            }
        }
    }

    fn static_response(
        &self,
        response: Spanned<RawStaticResponse>,
    ) -> Result<StaticResponse, ManifestError> {
        let response = response.into_inner();
        let status_code = match response.status_code {
            None => 200,
            Some(code) if (100..=599).contains(code.get_ref()) => code.into_inner(),
            Some(code) => {
                return Err(self.error(
                    code.span(),
                    format!("status code {} is out of range", code.get_ref()),
                    "use an HTTP status code between 100 and 599",
                ));
            }
        };
        Ok(StaticResponse {
            status_code,
            headers: response.headers,
            body: response.body,
        })
    }
}

/// The validated triggers of each type.
#[derive(Default)]
pub(super) struct Triggers {
    pub(super) http: Vec<HttpTrigger>,
    pub(super) redis: Vec<RedisTrigger>,
    pub(super) cron: Vec<CronTrigger>,
    /// Components copied for a trigger's middleware: (copy, original).
    pub(super) copies: Vec<(String, String)>,
}

/// Gives each component its trigger's middleware. A component that other triggers call too
/// is copied for the trigger with middleware, as Spin does: the copy is
/// `<component>-for-<trigger id>`, and a trigger without an id gets the one the locked app
/// would give it (`<component>-http-trigger`, else `http-trigger<N>`) so both match Spin's.
fn attach_middleware(
    triggers: &mut Triggers,
    components: &mut IndexMap<String, Component>,
    middleware: Vec<(usize, Vec<Dependency>)>,
) -> Vec<(String, String)> {
    let mut callers: HashMap<String, usize> = HashMap::new();
    let called = (triggers.http.iter().map(|t| t.component.as_ref()))
        .chain(triggers.redis.iter().map(|t| Some(&t.component)))
        .chain(triggers.cron.iter().map(|t| Some(&t.component)));
    for id in called.flatten() {
        *callers.entry(id.clone()).or_default() += 1;
    }
    // The ids the locked app gives HTTP triggers, assigned first and in order, after
    // every explicit id (as `wisp_app::resolve` and Spin's normaliser assign them).
    let mut taken: HashSet<String> = (triggers.http.iter().map(|t| t.id.clone()))
        .chain(triggers.redis.iter().map(|t| t.id.clone()))
        .chain(triggers.cron.iter().map(|t| t.id.clone()))
        .flatten()
        .collect();
    let ids: Vec<String> = (triggers.http.iter())
        .map(|t| rules::trigger_id(t.id.as_deref(), "http", t.component.as_deref(), &mut taken))
        .collect();
    let mut copies = Vec::new();
    for (index, chain) in middleware {
        let trigger = &mut triggers.http[index];
        let Some(id) = trigger.component.clone() else {
            continue;
        };
        if callers.get(&id).copied().unwrap_or(0) <= 1 {
            if let Some(component) = components.get_mut(&id) {
                component.middleware = chain;
            }
            continue;
        }
        let Some(original) = components.get(&id) else {
            continue;
        };
        let trigger_id = &ids[index];
        let mut copy_id = format!("{id}-for-{trigger_id}");
        if !rules::is_kebab_id(&copy_id) {
            copy_id = format!("{id}-for-trigger{}", index + 1);
        }
        let mut n = 0;
        let base = copy_id.clone();
        while components.contains_key(&copy_id) {
            n += 1;
            copy_id = format!("{base}-d{n}");
        }
        let mut copy = original.clone();
        copy.id = copy_id.clone();
        copy.copy_of = Some(id.clone());
        copy.middleware = chain;
        components.insert(copy_id.clone(), copy);
        trigger.id = Some(trigger_id.clone());
        trigger.component = Some(copy_id.clone());
        copies.push((copy_id, id));
    }
    copies
}

/// What the trigger checks remember across triggers.
#[derive(Default)]
struct TriggerState {
    /// Trigger ids seen so far.
    ids: HashSet<String>,
    /// Route collision key → (route as written, line).
    routes: HashMap<String, (String, usize)>,
    /// Number of generated inline component ids so far.
    generated: usize,
}
