//! The demo gateway's config: `demo.toml` with the data folder, the broker
//! and the function modules filled in, parsed and validated like any file.

use crate::config::{Config, ConfigError};
use std::path::{Path, PathBuf};

/// The template; `@NAME@` placeholders become TOML strings.
const TEMPLATE: &str = include_str!("demo.toml");

/// The standard functions the demo runs, by module file name (no `.wasm`).
pub const MODULES: [&str; 4] = ["scale", "threshold", "window", "cayenne-lpp"];

/// Why the demo config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DemoConfigError {
    /// A function module is not there.
    #[error(
        "{path} is missing: build the standard functions first with `functions/build.sh` \
         (or point --modules at the folder that holds scale.wasm, threshold.wasm, window.wasm and cayenne-lpp.wasm)"
    )]
    MissingModule {
        /// The file looked for.
        path: PathBuf,
    },
    /// The filled-in template is invalid or a module does not load.
    #[error("the demo config does not work:\n{0}")]
    Invalid(String),
}

/// The module files in `dir`, checked to exist, made absolute.
pub fn modules(dir: &Path) -> Result<Vec<PathBuf>, DemoConfigError> {
    MODULES
        .iter()
        .map(|name| {
            let path = dir.join(format!("{name}.wasm"));
            path.canonicalize()
                .map_err(|_| DemoConfigError::MissingModule { path })
        })
        .collect()
}

/// The config text: the template with every placeholder filled in;
/// `modbus_line` is the TOML table of the meters' line (see [`super::meters::Line::toml`]).
pub fn text(data_dir: &Path, broker_port: u16, modules: &[PathBuf], modbus_line: &str) -> String {
    let string = |s: String| toml::Value::String(s).to_string();
    let path = |p: &Path| string(p.display().to_string());
    let mut text = TEMPLATE.replace("@DATA_DIR@", &path(data_dir)).replace(
        "@BROKER_URL@",
        &string(format!("mqtt://127.0.0.1:{broker_port}")),
    );
    text = text.replace("@MODBUS_LINE@", modbus_line);
    text = text.replace(
        "@BLE_REPLAY@",
        &path(&data_dir.join(super::ble::SCRIPT_FILE)),
    );
    for (name, module) in MODULES.iter().zip(modules) {
        let placeholder = format!("@{}@", name.to_uppercase().replace('-', "_"));
        text = text.replace(&placeholder, &path(module));
    }
    text
}

/// Parses and validates the demo config and checks that its modules can be
/// read (the runtime compiles them when it starts).
pub fn build(
    data_dir: &Path,
    broker_port: u16,
    modules: &[PathBuf],
    modbus_line: &str,
) -> Result<Config, DemoConfigError> {
    let text = text(data_dir, broker_port, modules, modbus_line);
    let config =
        Config::parse(&text, "demo config").map_err(|e| DemoConfigError::Invalid(e.to_string()))?;
    let problems = config.environment_problems();
    if !problems.is_empty() {
        let error = ConfigError::new("demo config", &text, problems);
        return Err(DemoConfigError::Invalid(error.to_string()));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filled_in_template_is_a_valid_config() {
        let modules: Vec<PathBuf> = MODULES
            .iter()
            .map(|m| PathBuf::from(format!("/opt/fn dir/{m}.wasm")))
            .collect();
        let line = super::super::meters::Line::Serial(PathBuf::from("/dev/pts/7")).toml();
        let text = text(Path::new("/tmp/it's \"here\""), 41883, &modules, &line);
        let unfilled = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains('@'));
        assert_eq!(unfilled.count(), 0, "{text}");
        let config = Config::parse(&text, "demo").expect("valid");
        assert_eq!(config.gateway.data_dir, PathBuf::from("/tmp/it's \"here\""));
        assert_eq!(config.uplink.url.port, 41883);
        let names: Vec<&str> = config.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["scale", "threshold", "window", "cayenne-lpp"]);
        let lorawan = config
            .lorawan
            .as_ref()
            .expect("the demo runs LoRaWAN devices");
        let euis: Vec<&str> = lorawan.devices.iter().map(|d| d.dev_eui.as_str()).collect();
        assert_eq!(
            euis,
            [super::super::lora::OTAA_EUI, super::super::lora::ABP_EUI]
        );
        assert_eq!(
            lorawan.decoder_subjects().len(),
            2,
            "both decoded by cayenne-lpp"
        );
        assert_eq!(config.functions[1].module, modules[1]);
        let modbus = config
            .modbus
            .as_ref()
            .expect("the demo polls Modbus meters");
        assert_eq!(modbus.buses[0].path, PathBuf::from("/dev/pts/7"));
        assert_eq!(modbus.devices.len(), super::super::meters::FLEET.len());
        let ble = config
            .ble
            .as_ref()
            .expect("the demo listens to BLE sensors");
        assert_eq!(ble.devices.len(), 2);
        let tcp = super::super::meters::Line::Tcp("127.0.0.1:1502".parse().expect("addr")).toml();
        let config = Config::parse(&super::text(Path::new("/tmp"), 1, &modules, &tcp), "demo")
            .expect("valid over TCP too");
        assert_eq!(
            config.modbus.expect("modbus").tcp[0].address,
            "127.0.0.1:1502"
        );
    }

    #[test]
    fn a_missing_module_names_the_build_script() {
        let err = modules(Path::new("/nonexistent/dist")).expect_err("missing");
        let message = err.to_string();
        assert!(
            message.contains("/nonexistent/dist/scale.wasm"),
            "{message}"
        );
        assert!(message.contains("functions/build.sh"), "{message}");
    }
}
