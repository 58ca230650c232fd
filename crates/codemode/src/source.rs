//! From the bytes an agent wrote to JavaScript QuickJS can run: UTF-8 and size checks,
//! TypeScript types stripped with oxc, syntax errors with the script's own line and column,
//! and a map back from the generated code to the script for runtime errors.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Largest script accepted, in bytes.
pub const MAX_SCRIPT_BYTES: usize = 1 << 20;
/// The parsing thread's stack: this much, plus [`PARSE_STACK_PER_BYTE`] per byte of script
/// (measured: at most about 1.3 KiB per byte of the deepest constructs, unoptimised). Only
/// what a parse touches is ever committed.
const PARSE_STACK_BASE: usize = 32 << 20;
const PARSE_STACK_PER_BYTE: usize = 2 << 10;

/// Deepest nesting of brackets accepted (parsers recurse once per level).
pub const MAX_NESTING: usize = 512;

/// The script's language.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// TypeScript: types are stripped before the isolate sees the code.
    Ts,
    /// JavaScript, run as written.
    Js,
}

impl Language {
    /// The language a file name suggests: `.js`, `.mjs`, `.cjs` are JavaScript, anything
    /// else TypeScript (a superset).
    pub fn from_path(path: &Path) -> Language {
        match path.extension().and_then(|e| e.to_str()) {
            Some("js" | "mjs" | "cjs") => Language::Js,
            _ => Language::Ts,
        }
    }

    /// `ts` or `js`.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Ts => "ts",
            Language::Js => "js",
        }
    }
}

/// Why a script cannot run at all. Every message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Not UTF-8.
    #[error("`{name}` is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// The script's name.
        name: String,
        /// The first invalid byte.
        offset: usize,
    },
    /// Too large.
    #[error("`{name}` is {bytes} bytes; scripts may be at most {max} bytes")]
    TooLarge {
        /// The script's name.
        name: String,
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Brackets nested deeper than a parser should recurse.
    #[error("{name}:{line}:{column}: brackets nest deeper than {max} levels")]
    TooDeep {
        /// The script's name.
        name: String,
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// The limit.
        max: usize,
    },
    /// A syntax error, where the script has it.
    #[error("{name}:{line}:{column}: syntax error: {message}")]
    Syntax {
        /// The script's name.
        name: String,
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// What is wrong.
        message: String,
    },
}

/// A script ready for the isolate.
#[derive(Debug, Clone)]
pub struct Script {
    /// Its name in messages (`fix.ts`).
    pub name: String,
    /// `sha256:<hex>` of its bytes: every binding call it makes is recorded with it.
    pub digest: String,
    /// Its language.
    pub language: Language,
    /// Its size in bytes.
    pub bytes: usize,
    /// The code the isolate runs: the script as the body of an async function.
    pub(crate) code: String,
    /// Generated position → script position (TypeScript only), sorted.
    map: Vec<(u32, u32, u32, u32)>,
}

/// What precedes the script on its first line (no newline, so lines stay where they are).
pub(crate) const PREFIX: &str = "(async () => {";
/// What follows it, on a line of its own (a `//` comment on the last line cannot eat it).
pub(crate) const SUFFIX: &str = "\n})()";

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    let mut out = String::from("sha256:");
    for b in Sha256::digest(bytes) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Script {
    /// Check and prepare a script. `name` is used in messages.
    pub fn new(name: &str, bytes: &[u8], language: Language) -> Result<Script, SourceError> {
        if bytes.len() > MAX_SCRIPT_BYTES {
            return Err(SourceError::TooLarge {
                name: name.to_owned(),
                bytes: bytes.len(),
                max: MAX_SCRIPT_BYTES,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| SourceError::NotUtf8 {
            name: name.to_owned(),
            offset: e.valid_up_to(),
        })?;
        // A byte-order mark is not part of the program.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if let Some(offset) = too_deep(text) {
            let (line, column) = line_column(text, offset);
            return Err(SourceError::TooDeep {
                name: name.to_owned(),
                line,
                column,
                max: MAX_NESTING,
            });
        }
        let wrapped = format!("{PREFIX}{text}{SUFFIX}");
        // The parser and the passes after it recurse once per level of an expression, and
        // brackets are not the only way to nest (`!!!…1`, `x=>x=>…`, `1+1+…` in the tree):
        // they run on a thread whose stack grows with the script, so no script can overflow
        // the stack of the process that holds the task's gate and ledger.
        let stack = PARSE_STACK_BASE + PARSE_STACK_PER_BYTE * wrapped.len();
        let owned_name = name.to_owned();
        let parse = move || match language {
            Language::Js => {
                // Parsed here too, so a syntax error is reported before anything runs.
                check_syntax(&owned_name, &wrapped).map(|()| (wrapped, Vec::new()))
            }
            Language::Ts => strip_types(&owned_name, &wrapped),
        };
        let not_parsed = |why: String| SourceError::Syntax {
            name: name.to_owned(),
            line: 1,
            column: 1,
            message: format!("the script could not be parsed: {why}"),
        };
        let (code, map) = std::thread::Builder::new()
            .name("remit-parse".into())
            .stack_size(stack)
            .spawn(parse)
            .map_err(|e| not_parsed(e.to_string()))?
            .join()
            .map_err(|_| not_parsed("the parser failed".into()))??;
        Ok(Script {
            name: name.to_owned(),
            digest: digest(bytes),
            language,
            bytes: bytes.len(),
            code,
            map,
        })
    }

    /// Where a position in the code the isolate ran (1-based line and column) is in the
    /// script (1-based), when it can be told.
    pub(crate) fn original(&self, line: u32, column: u32) -> Option<(u32, u32)> {
        let (line, column) = if self.language == Language::Ts {
            let key = (line.saturating_sub(1), column.saturating_sub(1));
            let at = self
                .map
                .partition_point(|&(l, c, _, _)| (l, c) <= key)
                .checked_sub(1)?;
            let (dl, _, sl, sc) = *self.map.get(at)?;
            // A token on another line says nothing about the column.
            let col = if dl == key.0 { sc + 1 } else { 1 };
            (sl + 1, col)
        } else {
            (line, column)
        };
        unwrap_position(line, column)
    }
}

/// A position in the wrapped text → the script's (the prefix shares line 1).
fn unwrap_position(line: u32, column: u32) -> Option<(u32, u32)> {
    if line == 1 {
        let prefix = PREFIX.chars().count() as u32;
        return Some((1, column.saturating_sub(prefix).max(1)));
    }
    Some((line, column))
}

/// Where brackets first nest deeper than [`MAX_NESTING`], skipping strings and comments
/// (approximately: a regular expression literal counts its brackets).
fn too_deep(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let offset = offset.min(text.len());
    let mut cut = offset;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &text[..cut];
    let line = before.matches('\n').count() as u32 + 1;
    let start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[start..].chars().count() as u32 + 1;
    (line, column)
}

type Stripped = (String, Vec<(u32, u32, u32, u32)>);

fn syntax_error(name: &str, wrapped: &str, offset: usize, message: &str) -> SourceError {
    let (line, column) = line_column(wrapped, offset);
    let (line, column) = unwrap_position(line, column).unwrap_or((line, column));
    SourceError::Syntax {
        name: name.to_owned(),
        line,
        column,
        message: one_line(message),
    }
}

fn check_syntax(name: &str, wrapped: &str) -> Result<(), SourceError> {
    use oxc::allocator::Allocator;
    use oxc::parser::Parser;
    use oxc::span::SourceType;
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, wrapped, SourceType::script()).parse();
    if let Some(error) = parsed.diagnostics.errors().next() {
        let offset = error
            .labels
            .first()
            .map(|l| l.offset() as usize)
            .unwrap_or(0);
        return Err(syntax_error(name, wrapped, offset, &error.message));
    }
    Ok(())
}

fn strip_types(name: &str, wrapped: &str) -> Result<Stripped, SourceError> {
    use oxc::allocator::Allocator;
    use oxc::codegen::{Codegen, CodegenOptions};
    use oxc::parser::Parser;
    use oxc::semantic::SemanticBuilder;
    use oxc::span::SourceType;
    use oxc::transformer::{TransformOptions, Transformer};

    let syntax = |offset: usize, message: String| syntax_error(name, wrapped, offset, &message);
    let allocator = Allocator::default();
    let source_type = SourceType::ts().with_script(true);
    let parsed = Parser::new(&allocator, wrapped, source_type).parse();
    if let Some(error) = parsed.diagnostics.errors().next() {
        let offset = error
            .labels
            .first()
            .map(|l| l.offset() as usize)
            .unwrap_or(0);
        return Err(syntax(offset, error.message.to_string()));
    }
    if parsed.panicked {
        return Err(syntax(0, "the script could not be parsed".into()));
    }
    let mut program = parsed.program;
    let semantic = SemanticBuilder::new().build(&program);
    if let Some(error) = semantic.diagnostics.errors().next() {
        let offset = error
            .labels
            .first()
            .map(|l| l.offset() as usize)
            .unwrap_or(0);
        return Err(syntax(offset, error.message.to_string()));
    }
    let scoping = semantic.semantic.into_scoping();
    let options = TransformOptions::default();
    let transformed = Transformer::new(&allocator, Path::new(name), &options)
        .build_with_scoping(scoping, &mut program);
    if let Some(error) = transformed.diagnostics.errors().next() {
        let offset = error
            .labels
            .first()
            .map(|l| l.offset() as usize)
            .unwrap_or(0);
        return Err(syntax(offset, error.message.to_string()));
    }
    let generated = Codegen::new()
        .with_options(CodegenOptions {
            source_map_path: Some(Path::new(name).to_path_buf()),
            ..CodegenOptions::default()
        })
        .build(&program);
    let mut map: Vec<(u32, u32, u32, u32)> = generated
        .map
        .map(|m| {
            m.get_tokens()
                .map(|t| {
                    (
                        t.get_dst_line(),
                        t.get_dst_col(),
                        t.get_src_line(),
                        t.get_src_col(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    map.sort_unstable();
    Ok((generated.code, map))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn strips_types_and_keeps_positions_of_errors() {
        let s = Script::new(
            "a.ts",
            b"const x: number = 1;\ninterface A { b: string }\nreturn x as number;",
            Language::Ts,
        )
        .unwrap();
        assert!(!s.code.contains("interface"), "{}", s.code);
        assert!(s.digest.starts_with("sha256:"));
        let e = Script::new("b.ts", b"let a = 1;\nlet b = ;\n", Language::Ts).unwrap_err();
        match e {
            SourceError::Syntax { line, column, .. } => assert_eq!((line, column), (2, 9)),
            other => panic!("{other:?}"),
        }
        let e = Script::new("c.ts", b"const = 2", Language::Ts).unwrap_err();
        match e {
            SourceError::Syntax { line, column, .. } => assert_eq!((line, column), (1, 7)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("return {}1{};", "(".repeat(600), ")".repeat(600));
        assert!(matches!(
            Script::new("d.ts", deep.as_bytes(), Language::Ts),
            Err(SourceError::TooDeep {
                line: 1,
                column: 520,
                ..
            })
        ));
        let quoted = format!(
            "return '{}' + `{}`; // {}",
            "(".repeat(600),
            "[".repeat(600),
            "{".repeat(600)
        );
        assert!(Script::new("q.ts", quoted.as_bytes(), Language::Ts).is_ok());
    }

    #[test]
    fn bad_bytes() {
        assert!(matches!(
            Script::new("x.ts", b"let a = '\xff';", Language::Ts),
            Err(SourceError::NotUtf8 { offset: 9, .. })
        ));
        let big = vec![b' '; MAX_SCRIPT_BYTES + 1];
        assert!(matches!(
            Script::new("x.ts", &big, Language::Ts),
            Err(SourceError::TooLarge { .. })
        ));
    }
}
