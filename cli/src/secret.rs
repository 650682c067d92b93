//! Secrets (a client secret, a subject token) come from an environment variable or a file, never
//! from the command line, where `ps` and shell history would show them.

use std::fs;
use std::path::Path;

/// The secret in file `file` when given, else in environment variable `variable` when set and
/// not empty. Surrounding whitespace (a file's final newline) is dropped.
pub fn read(variable: &str, file: Option<&Path>) -> Result<Option<String>, String> {
    let text = match file {
        Some(file) => {
            fs::read_to_string(file).map_err(|error| format!("{}: {error}", file.display()))?
        }
        None => match std::env::var(variable) {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("${variable} is not UTF-8"))
            }
        },
    };
    let text = text.trim();
    Ok((!text.is_empty()).then(|| text.to_owned()))
}
