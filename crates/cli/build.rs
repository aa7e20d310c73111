//! Embeds `templates/` (the `wisp new` / `wisp add` templates) into the binary:
//! generates `$OUT_DIR/templates.rs` with every template's metadata and files. Also packs
//! the `wisp` binary's relative relocations and links the code a start and a request run
//! next to each other (see `link_order.rs`).

#[path = "link_order.rs"]
mod link_order;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    link_order::pack_relative_relocations();
    link_order::link_map();
    link_order::symbol_order();
    // Read when the script runs, not when it was compiled: a script binary built for
    // another checkout of the same source may be reused.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("../../templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut ids: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("templates/ exists")
        .map(|e| e.expect("readable templates/").path())
        .filter(|p| p.is_dir())
        .collect();
    ids.sort();
    let mut code = String::from("pub(crate) static TEMPLATES: &[EmbeddedTemplate] = &[\n");
    for dir in ids {
        let id = dir.file_name().unwrap().to_string_lossy().into_owned();
        println!("cargo:rerun-if-changed={}", dir.display());
        let metadata = dir.join("template.toml");
        let component = dir.join("component.toml");
        let mut files = Vec::new();
        collect(&dir.join("content"), &dir.join("content"), &mut files);
        files.sort();
        writeln!(code, "    EmbeddedTemplate {{").unwrap();
        writeln!(code, "        id: {id:?},").unwrap();
        writeln!(
            code,
            "        metadata: include_str!({:?}),",
            metadata.display().to_string()
        )
        .unwrap();
        if component.exists() {
            writeln!(
                code,
                "        component: Some(include_str!({:?})),",
                component.display().to_string()
            )
            .unwrap();
        } else {
            writeln!(code, "        component: None,").unwrap();
        }
        writeln!(code, "        files: &[").unwrap();
        for (relative, absolute) in files {
            println!("cargo:rerun-if-changed={}", absolute.display());
            writeln!(
                code,
                "            ({relative:?}, include_bytes!({:?})),",
                absolute.display().to_string()
            )
            .unwrap();
        }
        writeln!(code, "        ],\n    }},").unwrap();
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("templates.rs");
    std::fs::write(out, code).unwrap();
}

fn collect(base: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).expect("readable template directory") {
        let path = entry.expect("readable entry").path();
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_dir() {
            collect(base, &path, files);
        } else {
            let relative = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            files.push((relative, path));
        }
    }
}
