//! Access loggers: each is a file, stdout or stderr logger, and a format
//! sets exactly one of its oneof fields (the formats themselves are
//! parsed, and unknown operators refused, when weft-proxy compiles them).

use super::{exactly_one, At};
use crate::access_log::SubstitutionFormatString;
use crate::filters::AccessLog;
use crate::{FieldError, TypedConfig};

pub(super) fn access_logs(at: &At, logs: &[AccessLog]) -> Result<(), FieldError> {
    for (i, log) in logs.iter().enumerate() {
        let at = at.key("access_log").idx(i).key("typed_config");
        match &log.typed_config {
            Some(TypedConfig::FileAccessLog(f)) => {
                if f.path.is_empty() {
                    return Err(at.key("path").err("a file access log needs a path"));
                }
                let set = [
                    ("format", f.format.is_some()),
                    ("json_format", f.json_format.is_some()),
                    ("typed_json_format", f.typed_json_format.is_some()),
                    ("log_format", f.log_format.is_some()),
                ];
                if set.iter().filter(|(_, s)| *s).count() > 1 {
                    exactly_one(&at, "a file access log's format", &set)?;
                }
                if let Some(l) = &f.log_format {
                    log_format(&at.key("log_format"), l)?;
                }
            }
            Some(TypedConfig::StdoutAccessLog(s)) | Some(TypedConfig::StderrAccessLog(s)) => {
                if let Some(l) = &s.log_format {
                    log_format(&at.key("log_format"), l)?;
                }
            }
            Some(_) => return Err(at.err(
                "not an access logger weft implements (envoy.access_loggers.file, stdout, stderr)",
            )),
            None => return Err(at.err("an access log needs a typed_config")),
        }
    }
    Ok(())
}

fn log_format(at: &At, f: &SubstitutionFormatString) -> Result<(), FieldError> {
    exactly_one(
        at,
        "a SubstitutionFormatString",
        &[
            ("text_format", f.text_format.is_some()),
            ("text_format_source", f.text_format_source.is_some()),
            ("json_format", f.json_format.is_some()),
        ],
    )?;
    if let Some(s) = &f.text_format_source {
        let sat = at.key("text_format_source");
        exactly_one(
            &sat,
            "a format's DataSource",
            &[
                ("inline_string", s.inline_string.is_some()),
                ("inline_bytes", s.inline_bytes.is_some()),
                ("filename", s.filename.is_some()),
                ("environment_variable", s.environment_variable.is_some()),
            ],
        )?;
        for (name, set) in [
            ("inline_bytes", s.inline_bytes.is_some()),
            ("filename", s.filename.is_some()),
            ("environment_variable", s.environment_variable.is_some()),
        ] {
            if set {
                return Err(sat.key(name).err(format!(
                    "{name} is not implemented by weft yet (inline_string is)"
                )));
            }
        }
    }
    for (i, x) in f.formatters.iter().enumerate() {
        if !matches!(x.typed_config, Some(TypedConfig::ReqWithoutQuery)) {
            return Err(at
                .key("formatters")
                .idx(i)
                .err("only envoy.formatter.req_without_query is implemented by weft"));
        }
    }
    Ok(())
}
