//! The schema language: SpiceDB's permission-definition text compiled into a
//! typed rewrite graph (`CompiledSchema`), and printed back in canonical form.
//! Text flows parser → ast → compile (+ validate, reachability) → compiled;
//! print goes the other way. Depends on nothing else in the crate.

pub mod ast;
mod caveat;
mod cel_check;
mod compile;
pub mod compiled;
pub mod dependencies;
pub mod diagnostic;
pub mod diff;
mod names;
mod parser;
pub mod print;
pub mod reachability;
mod validate;

pub use compiled::*;
pub use diagnostic::{Diagnostic, ErrorKind, SchemaErrors};

/// Parses, compiles and type-checks schema text.
pub fn compile(source: &str) -> Result<CompiledSchema, SchemaErrors> {
    let file = parser::parse(source)?;
    compile::compile(&file)
}

/// Parses and translates schema text without the cross-definition type
/// checks, as SpiceDB's compiler does on its own (DiffSchema's comparison
/// schema). Only for inspecting a schema, never for evaluating one.
pub fn compile_unchecked(source: &str) -> Result<CompiledSchema, SchemaErrors> {
    let file = parser::parse(source)?;
    compile::translate_only(&file)
}

/// A schema with no definitions and no caveats: what reflection sees in a
/// datastore no schema was written to.
pub fn empty() -> CompiledSchema {
    compile::assemble(Vec::new(), Vec::new())
}

/// The canonical text of a compiled schema (SpiceDB's ReadSchema format).
pub fn format(schema: &CompiledSchema) -> String {
    print::print(schema)
}

#[cfg(test)]
mod tests;
