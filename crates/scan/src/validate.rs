//! Checks a candidate must pass after its pattern matched: checksums, decodable structure,
//! entropy, and the rejection of placeholders, references, hashes and UUIDs.
//!
//! Precision comes before volume: every check here exists because a pattern alone flags
//! documentation examples, templates or digests as secrets.

use base64::Engine as _;

/// A named check in code, referred to by `validator = "…"` in a rule file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validator {
    /// GitHub `gh?_` tokens: the last 6 characters are the base62 CRC32 of the 30 before.
    GithubCrc32,
    /// npm `npm_` tokens: the same scheme as GitHub's.
    NpmCrc32,
    /// A signed JWT whose header and payload decode to JSON objects.
    Jwt,
    /// A PEM block with a real base64 body (not `...` or a placeholder).
    PemBody,
    /// A PyPI API token: a macaroon whose location is `pypi.org`.
    PypiMacaroon,
    /// The password of a `scheme://user:password@host` URL is not a placeholder.
    UrlCredentials,
    /// `Authorization: Basic` value that decodes to `user:password`.
    BasicAuth,
    /// Docker `config.json` `auth`: base64 of `user:password`.
    DockerAuth,
    /// AWS access key id: not one of AWS's documentation examples.
    AwsAccessKey,
    /// GCP service-account JSON: the private key body is real.
    GcpServiceAccount,
    /// Base64 whose decoding is a PEM private key (kubeconfig `client-key-data`).
    Base64Pem,
}

impl Validator {
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "github-crc32" => Self::GithubCrc32,
            "npm-crc32" => Self::NpmCrc32,
            "jwt" => Self::Jwt,
            "pem-body" => Self::PemBody,
            "pypi-macaroon" => Self::PypiMacaroon,
            "url-credentials" => Self::UrlCredentials,
            "basic-auth" => Self::BasicAuth,
            "docker-auth" => Self::DockerAuth,
            "aws-access-key" => Self::AwsAccessKey,
            "gcp-service-account" => Self::GcpServiceAccount,
            "base64-pem" => Self::Base64Pem,
            _ => return None,
        })
    }

    /// Whether passing proves the value has the format (a checksum, a decoded structure),
    /// rather than only ruling out placeholders.
    pub(crate) fn proves_format(self) -> bool {
        !matches!(self, Self::UrlCredentials | Self::AwsAccessKey)
    }

    /// `secret` is the captured secret, `matched` the whole match around it.
    pub(crate) fn check(self, secret: &[u8], matched: &[u8]) -> bool {
        match self {
            Self::GithubCrc32 | Self::NpmCrc32 => base62_crc32_ok(secret),
            Self::Jwt => jwt_ok(secret),
            Self::PemBody | Self::GcpServiceAccount => pem_body_ok(secret),
            Self::PypiMacaroon => pypi_ok(secret),
            Self::UrlCredentials => url_password_ok(secret, matched),
            Self::BasicAuth | Self::DockerAuth => basic_auth_ok(secret),
            Self::AwsAccessKey => !contains_ci(secret, b"EXAMPLE"),
            Self::Base64Pem => base64_pem_ok(secret),
        }
    }
}

/// Shannon entropy in bits per byte.
pub(crate) fn entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[usize::from(b)] += 1;
    }
    let len = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// Well-known values from vendors' documentation: never real, always in examples.
const DOCUMENTED_EXAMPLES: &[&[u8]] = &[
    b"AKIAIOSFODNN7EXAMPLE",
    b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    b"je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    b"sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    b"pk_test_TYooMQauvdEDq54NiTphI7jx",
    b"xoxb-not-a-real-token-this-will-not-work",
    b"ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    b"gho_16C7e42F292c6912E7710c838347Ae178B4a",
];

/// Substrings (lowercase) that mark a value as a placeholder, not a secret. Each is at least
/// five characters or cannot occur in base62/base64 tokens, so random tokens are not hit.
const PLACEHOLDER_MARKERS: &[&[u8]] = &[
    b"example",
    b"placeholder",
    b"changeme",
    b"change_me",
    b"change-me",
    b"change_this",
    b"changethis",
    b"your_",
    b"your-",
    b"yourapikey",
    b"yourtoken",
    b"yoursecret",
    b"yourpassword",
    b"xxxxx",
    b"*****",
    b"\xe2\x80\xa2\xe2\x80\xa2",
    b"....",
    b"dummy",
    b"redacted",
    b"sample",
    b"insert_",
    b"insert-",
    b"replace_me",
    b"replace-me",
    b"replaceme",
    b"not_a_real",
    b"not-a-real",
    b"notarealtoken",
    b"notreal",
    b"lorem",
    b"ipsum",
    b"foobar",
    b"_here",
    b"-here",
    b"<",
    b">",
    b"${",
    b"{{",
    b"}}",
    b"%(",
    b"0000000000",
    b"1234567890",
    b"abcdefghij",
    b"abcd1234",
    b"a1b2c3",
    b"12345678",
];

/// Whole values (compared case-insensitively) that are defaults or words, not secrets.
const WEAK_VALUES: &[&[u8]] = &[
    b"password",
    b"passw0rd",
    b"password1",
    b"password123",
    b"pass",
    b"passwd",
    b"secret",
    b"secret123",
    b"mysecret",
    b"supersecret",
    b"changeit",
    b"admin",
    b"admin123",
    b"administrator",
    b"root",
    b"toor",
    b"test",
    b"test123",
    b"testing",
    b"testpass",
    b"testpassword",
    b"guest",
    b"default",
    b"letmein",
    b"qwerty",
    b"123456",
    b"12345678",
    b"postgres",
    b"mysql",
    b"redis",
    b"rabbitmq",
    b"user",
    b"username",
    b"none",
    b"null",
    b"nil",
    b"true",
    b"false",
    b"undefined",
    b"required",
    b"optional",
    b"string",
    b"value",
    b"empty",
    b"hidden",
    b"masked",
    b"unknown",
    b"token",
    b"apikey",
    b"api_key",
    b"bearer",
    b"basic",
    b"pwd",
    b"hunter2",
    b"swordfish",
    b"opensesame",
];

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.len() > hay.len() {
        return false;
    }
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// True when the value is a documentation example or a placeholder. Applies to every rule.
pub(crate) fn is_placeholder(secret: &[u8]) -> bool {
    if DOCUMENTED_EXAMPLES.contains(&secret) {
        return true;
    }
    if PLACEHOLDER_MARKERS.iter().any(|m| contains_ci(secret, m)) {
        return true;
    }
    // An elided example (`QVdTOkN...`, `AbCd…EdCb`): documentation, not a value.
    if memchr::memmem::find(secret, b"...").is_some()
        || memchr::memmem::find(secret, "\u{2026}".as_bytes()).is_some()
    {
        return true;
    }
    // A style or anchor name (`#ansiyellow`, `#main-content`) or a colour (`#ff00aa`).
    if let Some(rest) = secret.strip_prefix(b"#")
        && !rest.is_empty()
        && (rest
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b == b'-' || b == b'_')
            || (matches!(rest.len(), 3 | 4 | 6 | 8) && is_hex(rest)))
    {
        return true;
    }
    // One or two distinct bytes over a long value: `aaaaaaaa`, `abababab`.
    if secret.len() >= 8 {
        let first = secret[0];
        let second = secret.iter().copied().find(|&b| b != first);
        if let Some(second) = second {
            if secret.iter().all(|&b| b == first || b == second) {
                return true;
            }
        } else {
            return true;
        }
    }
    false
}

fn is_hex(data: &[u8]) -> bool {
    !data.is_empty() && data.iter().all(u8::is_ascii_hexdigit)
}

/// `8-4-4-4-12` hex.
pub(crate) fn is_uuid(data: &[u8]) -> bool {
    data.len() == 36
        && data.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Hex digests of the usual lengths (MD5, SHA-1, SHA-256, SHA-384, SHA-512), in one case.
fn is_hex_digest(data: &[u8]) -> bool {
    matches!(data.len(), 32 | 40 | 64 | 96 | 128)
        && is_hex(data)
        && (data.iter().all(|b| !b.is_ascii_uppercase())
            || data.iter().all(|b| !b.is_ascii_lowercase()))
}

/// Subresource-integrity and lockfile digests: `sha512-…`, `sha256:…`, Go's `h1:…`.
fn is_integrity(data: &[u8]) -> bool {
    const PREFIXES: &[&[u8]] = &[
        b"sha1-",
        b"sha256-",
        b"sha384-",
        b"sha512-",
        b"sha1:",
        b"sha256:",
        b"sha384:",
        b"sha512:",
        b"md5:",
        b"md5-",
        b"h1:",
        b"blake2b:",
        b"blake3:",
    ];
    PREFIXES
        .iter()
        .any(|p| data.len() > p.len() && data[..p.len()].eq_ignore_ascii_case(p))
}

/// References to a value elsewhere rather than the value: `$VAR`, `${VAR}`, `%VAR%`,
/// `{{ .Values.x }}`, `<secret>`, `os.environ[...]`, a function call, a path.
fn is_reference(data: &[u8]) -> bool {
    let Some(&first) = data.first() else {
        return true;
    };
    // `$VAR`, `%VAR%`, `{var}`, `<secret>`, `/run/secrets/x`, `~/.secret`, `(expr)`, `[index]`.
    if matches!(first, b'$' | b'{' | b'<' | b'/' | b'(' | b'[' | b'`')
        || (first == b'%' && data.last() == Some(&b'%'))
        || data.starts_with(b"~/")
    {
        return true;
    }
    if data.starts_with(b"./") || data.starts_with(b"../") {
        return true;
    }
    const MARKERS: &[&[u8]] = &[
        b"${",
        b"$(",
        b"{{",
        b"os.environ",
        b"process.env",
        b"getenv",
        b"env(",
        b"env[",
        b"environ",
        b"secretkeyref",
        b"valuefrom",
        b"://",
        b"secrets.",
        b"vault:",
        b"lookup(",
        b"()",
        b"%(",
        b"{0}",
        b"{}",
        b"arn:",
    ];
    if MARKERS.iter().any(|m| contains_ci(data, m)) {
        return true;
    }
    // A format string: `share-{id}-{org}`, `#{token}`.
    if let (Some(open), Some(close)) = (
        data.iter().position(|&b| b == b'{'),
        data.iter().rposition(|&b| b == b'}'),
    ) && open < close
    {
        return true;
    }
    // A printf `%s` (lowercase, not followed by more of a word).
    if let Some(pos) = find(data, b"%s")
        && data.get(pos + 2).is_none_or(|b| !b.is_ascii_alphanumeric())
    {
        return true;
    }
    // `self.password`, `config.db.password`, `settings.SECRET_KEY`: dotted identifiers.
    data.contains(&b'.')
        && data.split(|&b| b == b'.').all(|part| {
            !part.is_empty() && part.iter().all(|&b| b.is_ascii_alphabetic() || b == b'_')
        })
}

/// Tokens whose format carries a checksum: a generic rule must not report one that failed it.
const CHECKSUMMED: &[&[u8]] = &[b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"npm_"];

/// Filters for free-form values (rules marked `generic`). `quoted`: the value was between
/// quotes, so trailing punctuation is part of it rather than code.
pub(crate) fn generic_value_ok(secret: &[u8], quoted: bool) -> bool {
    if CHECKSUMMED.iter().any(|p| secret.starts_with(p)) && !base62_crc32_ok(secret) {
        return false;
    }
    if secret.len() < 6
        || is_reference(secret)
        || is_uuid(secret)
        || is_hex_digest(secret)
        || is_integrity(secret)
    {
        return false;
    }
    if WEAK_VALUES.iter().any(|w| secret.eq_ignore_ascii_case(w)) {
        return false;
    }
    // A name that contains what it names (`userPassword`, `id-aa-timeStampToken`).
    const NAME_WORDS: &[&[u8]] = &[
        b"password",
        b"passwd",
        b"passphrase",
        b"secret",
        b"token",
        b"apikey",
        b"api_key",
        b"api-key",
        b"credential",
    ];
    if NAME_WORDS.iter().any(|w| contains_ci(secret, w)) {
        return false;
    }
    // Code, not a value: `argv[1];`, `f(x),`, `items[0]`, `Credentials(`.
    let has = |b: u8| secret.contains(&b);
    let code_end = matches!(
        secret.last(),
        Some(b';' | b',' | b'(' | b'[' | b'{' | b'\\' | b':')
    );
    if (code_end && !quoted) || (has(b'(') && has(b')')) || (has(b'[') && has(b']')) {
        return false;
    }
    // A word or identifier (`Incomplete`, `DeviceCredentials`) or a short hex id
    // (`48205d4ffd7feba3`).
    if secret.iter().all(u8::is_ascii_alphabetic) || (secret.len() < 24 && is_hex(secret)) {
        return false;
    }
    if is_periodic(secret) || is_leet_weak(secret) {
        return false;
    }
    // bcrypt / crypt(3) / argon2 hashes are digests, not secrets.
    if secret.starts_with(b"$2") || secret.starts_with(b"$argon2") || secret.starts_with(b"$6$") {
        return false;
    }
    // An identifier in snake or camel case with no digit and no symbol reads as a name
    // (`password = user_password`, `token: accessToken`), not a value.
    let identifier_like = secret
        .iter()
        .all(|&b| b.is_ascii_alphabetic() || b == b'_' || b == b'-')
        && (secret.contains(&b'_')
            || secret.iter().all(u8::is_ascii_lowercase)
            || secret.iter().all(|b| b.is_ascii_uppercase() || *b == b'_'));
    if identifier_like {
        return false;
    }
    // Type names and keywords that follow `password:` in code.
    const CODE_WORDS: &[&[u8]] = &[
        b"str",
        b"string",
        b"optional",
        b"secretstr",
        b"bytes",
        b"sensitive",
    ];
    if CODE_WORDS.iter().any(|w| {
        secret.len() >= w.len()
            && secret[..w.len()].eq_ignore_ascii_case(w)
            && secret
                .get(w.len())
                .is_none_or(|b| !b.is_ascii_alphanumeric())
    }) {
        return false;
    }
    entropy(secret) >= 2.5
}

/// A unit repeated at least three times (`saltSALTsaltSALTsalt`, `abcabcabc`).
fn is_periodic(data: &[u8]) -> bool {
    (1..=data.len() / 3).any(|p| {
        data.iter()
            .zip(&data[p..])
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
    })
}

/// A weak word in leetspeak: `P@55w0rd!`, `s3cr3t`, `4dm1n`.
fn is_leet_weak(data: &[u8]) -> bool {
    // Symbols read as letters (`P@55w0rd`), and symbols as separators (`Pass@Word1`).
    let letters_only: Vec<u8> = data
        .iter()
        .filter(|b| b.is_ascii_alphabetic())
        .map(u8::to_ascii_lowercase)
        .collect();
    let plain: Vec<u8> = data
        .iter()
        .filter_map(|&b| match b.to_ascii_lowercase() {
            b'@' | b'4' => Some(b'a'),
            b'5' | b'$' => Some(b's'),
            b'0' => Some(b'o'),
            b'1' | b'!' | b'|' => Some(b'i'),
            b'3' => Some(b'e'),
            b'7' => Some(b't'),
            c if c.is_ascii_alphabetic() => Some(c),
            _ => None,
        })
        .collect();
    const WORDS: &[&[u8]] = &[
        b"password",
        b"passwort",
        b"passwd",
        b"secret",
        b"admin",
        b"changeme",
        b"letmein",
        b"qwerty",
        b"welcome",
        b"default",
    ];
    WORDS.iter().any(|w| {
        (contains_ci(&plain, w) && plain.len() <= w.len() + 4)
            || (contains_ci(&letters_only, w) && data.len() <= w.len() + 4)
    })
}

/// Key names that qualify a token or key as something other than a credential: pagination
/// cursors, idempotency and request ids, CSRF tokens, lexer tokens.
const NON_SECRET_KEYS: &[&[u8]] = &[
    b"next",
    b"page",
    b"continuation",
    b"pagination",
    b"cursor",
    b"idempoten",
    b"request",
    b"change",
    b"marker",
    b"cancel",
    b"sync",
    b"resume",
    b"offending",
    b"input",
    b"output",
    b"clienttoken",
    b"client_token",
    b"client-token",
    b"purchase",
    b"csrf",
    b"xsrf",
    b"authenticity",
    b"lexer",
    b"parser",
    b"tokenizer",
    b"max_",
    b"min_",
    b"_length",
    b"_len",
    b"_size",
    b"_count",
    b"_type",
    b"_name",
    b"_url",
    b"_uri",
    b"_path",
    b"_file",
    b"_field",
    b"_label",
    b"_prompt",
    b"_placeholder",
    b"_regex",
    b"_pattern",
    b"_format",
    b"_id\"",
    b"_expires",
    b"_expiry",
    b"_ttl",
    b"_hint",
    b"policy",
    b"reset",
    b"forgot",
    b"confirm",
    b"validation",
    b"strength",
    b"rotation",
    b"starting",
    b"-unit",
    b"copy",
];

/// Whether the key text before a generic value names a credential rather than a cursor,
/// an id or a setting about credentials.
pub(crate) fn generic_key_ok(key: &[u8]) -> bool {
    !NON_SECRET_KEYS.iter().any(|w| contains_ci(key, w))
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62_value(b: u8) -> Option<u64> {
    BASE62.iter().position(|&c| c == b).map(|p| p as u64)
}

/// CRC-32 (IEEE 802.3, as zlib computes it).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// GitHub and npm tokens: `<prefix>_<30 base62><6 base62 CRC32 of the 30>`.
fn base62_crc32_ok(token: &[u8]) -> bool {
    let Some(underscore) = token.iter().position(|&b| b == b'_') else {
        return false;
    };
    let body = &token[underscore + 1..];
    if body.len() != 36 {
        return false;
    }
    let (random, check) = body.split_at(30);
    let mut value: u64 = 0;
    for &b in check {
        let Some(digit) = base62_value(b) else {
            return false;
        };
        value = value * 62 + digit;
    }
    value == u64::from(crc32(random))
}

fn decode_b64_loose(data: &[u8]) -> Option<Vec<u8>> {
    let trimmed: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'-' => b'+',
            b'_' => b'/',
            other => other,
        })
        .filter(|&b| b != b'=')
        .collect();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&trimmed)
        .ok()
        .or_else(|| {
            // Tolerate a truncated final quantum (a value cut by the pattern).
            let keep = trimmed.len() - trimmed.len() % 4;
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(&trimmed[..keep])
                .ok()
        })
}

fn jwt_ok(token: &[u8]) -> bool {
    let parts: Vec<&[u8]> = token.split(|&b| b == b'.').collect();
    if parts.len() != 3 || parts[2].len() < 16 {
        return false;
    }
    let (Some(header), Some(payload)) = (decode_b64_loose(parts[0]), decode_b64_loose(parts[1]))
    else {
        return false;
    };
    header.first() == Some(&b'{')
        && contains_ci(&header, b"\"alg\"")
        && !contains_ci(&header, b"\"none\"")
        && payload.first() == Some(&b'{')
}

/// The base64 body of a PEM block (or of a JSON string holding one, with `\n` escapes).
fn pem_body_ok(block: &[u8]) -> bool {
    let mut body = Vec::with_capacity(block.len());
    let text = block;
    let mut i = 0;
    // Skip the BEGIN line.
    if let Some(pos) = find(text, b"-----BEGIN") {
        i = pos + 10;
        if let Some(end) = find(&text[i..], b"-----") {
            i += end + 5;
        }
    }
    let stop = find(&text[i..], b"-----END").map_or(text.len(), |p| i + p);
    let inner = &text[i..stop];
    for line in inner.split(|&b| b == b'\n') {
        // Escaped newlines inside JSON strings.
        for piece in split_escaped_newlines(line) {
            let piece = trim(piece);
            if piece.contains(&b':') {
                continue; // `Proc-Type: 4,ENCRYPTED`, `Comment: …`
            }
            body.extend(piece.iter().copied().filter(|b| !b.is_ascii_whitespace()));
        }
    }
    body.len() >= 64
        && body
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        && !is_placeholder(&body)
        && entropy(&body) > 4.5
}

fn split_escaped_newlines(line: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < line.len() {
        if line[i] == b'\\' && matches!(line[i + 1], b'n' | b'r') {
            out.push(&line[start..i]);
            i += 2;
            start = i;
        } else {
            i += 1;
        }
    }
    out.push(&line[start..]);
    out
}

fn trim(data: &[u8]) -> &[u8] {
    let start = data
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(data.len());
    let end = data
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &data[start..end]
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn pypi_ok(token: &[u8]) -> bool {
    let Some(rest) = token.strip_prefix(b"pypi-") else {
        return false;
    };
    let head = &rest[..rest.len().min(64)];
    decode_b64_loose(head).is_some_and(|d| find(&d, b"pypi.org").is_some())
}

fn url_password_ok(password: &[u8], matched: &[u8]) -> bool {
    // Passwords in URLs are percent-encoded, so only template syntax marks a reference.
    const TEMPLATES: &[&[u8]] = &[b"${", b"{{", b"%(", b"<", b"$("];
    if password.len() < 3
        || password.first() == Some(&b'$')
        || TEMPLATES.iter().any(|t| find(password, t).is_some())
        || is_placeholder(password)
    {
        return false;
    }
    if WEAK_VALUES.iter().any(|w| password.eq_ignore_ascii_case(w)) {
        return false;
    }
    // `user:user@`, `postgres:postgres@`: the user name repeated is a default, not a secret.
    if let Some(scheme_end) = find(matched, b"://") {
        let rest = &matched[scheme_end + 3..];
        if let Some(colon) = rest.iter().position(|&b| b == b':') {
            let user = &rest[..colon];
            if user.eq_ignore_ascii_case(password) {
                return false;
            }
        }
    }
    // A percent-encoded or plain `%s`/`*` template.
    !password
        .iter()
        .all(|&b| b == b'*' || b == b'x' || b == b'X')
}

fn basic_auth_ok(value: &[u8]) -> bool {
    let Some(decoded) = decode_b64_loose(value) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    !user.is_empty()
        && password.len() >= 3
        && decoded.iter().all(|b| (0x20..0x7f).contains(b))
        && !is_placeholder(password)
        && !WEAK_VALUES.iter().any(|w| password.eq_ignore_ascii_case(w))
}

fn base64_pem_ok(value: &[u8]) -> bool {
    decode_b64_loose(value).is_some_and(|d| find(&d, b"PRIVATE KEY").is_some() && pem_body_ok(&d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn entropy_bounds() {
        assert!(entropy(b"aaaa") < 0.01);
        assert!((entropy(b"abcd") - 2.0).abs() < 1e-9);
    }
}
