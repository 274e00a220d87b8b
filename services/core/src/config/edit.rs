//! Editing the user's configuration file in place: one setting changed,
//! comments and layout kept, the file replaced atomically.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::ConfigError;
use super::merge::{parse_layer, read_optional, syntax_issue};
use super::schema::check_layer;

/// Sets `auto_allocation.enabled` in the user file at `path`, keeping the
/// rest of it (comments included); creates the file if missing. Refuses,
/// changing nothing, when the file is not a valid configuration on its own.
/// The write is atomic (temporary file, then rename).
pub fn set_user_auto_allocation_enabled(path: &Path, enabled: bool) -> Result<(), ConfigError> {
    // Edit the file a symlink points to, not the link (managed dotfiles).
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let text = read_optional(&path)?.unwrap_or_default();
    let mut table = parse_layer(&path, &text).map_err(|issue| ConfigError::Invalid(vec![issue]))?;
    let issues = check_layer(&path, &mut table);
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues));
    }
    let mut document: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        ConfigError::Invalid(vec![syntax_issue(&path, &text, e.span(), e.message())])
    })?;
    let section = document.entry("auto_allocation").or_insert_with(toml_edit::table);
    section["enabled"] = toml_edit::value(enabled);
    write_atomically(&path, &document.to_string())
}

fn write_atomically(path: &Path, text: &str) -> Result<(), ConfigError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(ConfigError::io("create directory", dir))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = fs::File::create(&temp).map_err(ConfigError::io("create", &temp))?;
        file.write_all(text.as_bytes()).map_err(ConfigError::io("write", &temp))?;
        if let Ok(existing) = fs::metadata(path) {
            file.set_permissions(existing.permissions()).map_err(ConfigError::io("set permissions of", &temp))?;
        }
        file.sync_all().map_err(ConfigError::io("sync", &temp))?;
        fs::rename(&temp, path).map_err(ConfigError::io("replace", path))
    })();
    if written.is_err() {
        // Best effort: the error being returned is the one that matters.
        let _ = fs::remove_file(&temp);
    }
    written
}
