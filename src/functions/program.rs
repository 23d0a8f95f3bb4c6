//! A function's compiled module: read once, checked against ABI v1, compiled
//! once, and instantiated as often as traps require.

use crate::config::FunctionConfig;
use sluice_event::abi;
use std::path::{Path, PathBuf};
use wasmi::{Engine, ExternType, Module};

/// Why a module cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The module file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly module.
    #[error("{path} is not a valid WebAssembly module: {message}")]
    Invalid {
        /// The module file.
        path: PathBuf,
        /// What wasmi said.
        message: String,
    },
    /// The module does not follow ABI v1.
    #[error("{path} does not follow the Sluice function ABI v1: {message}")]
    Abi {
        /// The module file.
        path: PathBuf,
        /// What is missing or extra.
        message: String,
    },
}

/// A compiled module and which optional entry points it has.
#[derive(Clone)]
pub struct Program {
    /// The compiled module.
    pub module: Module,
    /// Exports `sluice_init`.
    pub has_init: bool,
    /// Exports `sluice_on_tick`.
    pub has_tick: bool,
}

/// The engine every function runs on: fuel metering on, and code translated
/// when the module is loaded (`CompilationMode::Eager`) rather than on its
/// first use, so that neither a function's start nor its first calls pay
/// for translation on the event path; loading a module costs that instead.
pub fn engine() -> Engine {
    let mut config = wasmi::Config::default();
    config.consume_fuel(true);
    config.compilation_mode(wasmi::CompilationMode::Eager);
    Engine::new(&config)
}

impl Program {
    /// Reads and checks the module named by a function's config (used by `sluice check`).
    pub fn load(f: &FunctionConfig) -> Result<Program, ProgramError> {
        let program = Program::compile(&engine(), &f.module)?;
        if f.every.is_some() && !program.has_tick {
            return Err(abi_error(
                &f.module,
                format!(
                    "the config sets `every` but the module does not export `{}`",
                    abi::EXPORT_ON_TICK
                ),
            ));
        }
        Ok(program)
    }

    /// Reads, compiles and checks a module file.
    pub fn compile(engine: &Engine, path: &Path) -> Result<Program, ProgramError> {
        let wasm = std::fs::read(path).map_err(|source| ProgramError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        let module = Module::new(engine, &wasm).map_err(|e| ProgramError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        for import in module.imports() {
            if import.module() != abi::IMPORT_MODULE {
                return Err(abi_error(
                    path,
                    format!(
                        "imports `{}::{}`; only `{}` imports are provided (no WASI)",
                        import.module(),
                        import.name(),
                        abi::IMPORT_MODULE
                    ),
                ));
            }
        }
        let func = |name: &str| {
            module
                .exports()
                .any(|e| e.name() == name && matches!(e.ty(), ExternType::Func(_)))
        };
        let has_memory = module
            .exports()
            .any(|e| e.name() == abi::EXPORT_MEMORY && matches!(e.ty(), ExternType::Memory(_)));
        if !has_memory {
            return Err(abi_error(path, "no exported `memory`".into()));
        }
        for required in [
            abi::EXPORT_ABI_VERSION,
            abi::EXPORT_ALLOC,
            abi::EXPORT_ON_EVENT,
        ] {
            if !func(required) {
                return Err(abi_error(
                    path,
                    format!("no exported function `{required}`"),
                ));
            }
        }
        Ok(Program {
            has_init: func(abi::EXPORT_INIT),
            has_tick: func(abi::EXPORT_ON_TICK),
            module,
        })
    }
}

fn abi_error(path: &Path, message: String) -> ProgramError {
    ProgramError::Abi {
        path: path.to_owned(),
        message,
    }
}
