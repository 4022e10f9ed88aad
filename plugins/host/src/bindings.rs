//! Host-side code generated from `plugins/wit/v0.1.0` by wasmtime's
//! `bindgen!`. Private: the rest of the crate converts to and from the plain
//! types in `lib.rs`, so no wasmtime type reaches evald's other crates.

// The generated code is not ours to lint or document.
#![allow(missing_docs, clippy::all)]

/// The `scorer` world. Its records borrow (`&str`, slices), so that a call
/// lowers the caller's observation without copying it first.
pub(crate) mod scorer {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "scorer",
        exports: { default: async },
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

/// The `generator` world, with its own owned copy of the `types`: its cases
/// are results, which must own their strings.
pub(crate) mod generator {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "generator",
        exports: { default: async },
    });
}
