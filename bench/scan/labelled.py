#!/usr/bin/env python3
"""Generate the labelled accuracy set: real files with planted, format-valid fake secrets and
look-alike decoys, plus the ground truth.

usage: labelled.py OUT_DIR [SEED]

Writes OUT_DIR/files/… and OUT_DIR/truth.json. Every planted value is random and was never
issued by any provider. Each entry of truth.json is one planted line range:
  {"file": "files/…", "first": N, "last": M, "kind": "github-pat", "secret": true|false}
`secret: false` marks a decoy: a placeholder, documentation example, digest, UUID, lockfile
integrity string, bad-checksum token, public key or certificate that a precise scanner must
not report.

Carriers are real text already on the machine: Python standard-library modules and
/usr/share/doc files. Carriers that already hold something secret-like (a private key, an
AWS key id, a password assignment…) are left out, so that a finding outside the planted lines
is a false positive. Config files (.env, YAML, JSON, dot-files), logs, diffs and terminal
transcripts are generated around the plants, as an agent would produce them.
"""
import base64
import glob
import json
import os
import random
import re
import sys
import sysconfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakes import Fakes  # noqa: E402

SUSPECT = re.compile(
    r"PRIVATE KEY|AKIA[0-9A-Z]{16}|ghp_|xox[bpa]-|passw(or)?d\s*[:=]|secret\s*[:=]|token\s*[:=]|://[^/\s:@]+:[^/\s@]+@|"
    r"api[_-]?key|BEGIN CERT|sk_live|eyJ[A-Za-z0-9]",
    re.I,
)


class Set:
    def __init__(self, out, seed):
        self.out = out
        self.f = Fakes(seed)
        self.rng = self.f.rng
        self.truth = []
        self.files = {}  # relative path -> list of lines

    # -- files ------------------------------------------------------------------------
    def new_file(self, rel, lines=None):
        self.files[rel] = list(lines or [])
        return rel

    def add(self, rel, lines, kind, secret, at=None):
        """Insert `lines` (a plant or decoy) into file `rel` at line index `at` (or the end)."""
        body = self.files[rel]
        if at is None:
            at = len(body)
        for entry in self.truth:  # shift entries below the insertion point
            if entry["file"] == rel and entry["first"] > at:
                entry["first"] += len(lines)
                entry["last"] += len(lines)
        body[at:at] = lines
        self.truth.append({"file": rel, "first": at + 1, "last": at + len(lines), "kind": kind, "secret": secret})

    def write(self):
        for rel, lines in self.files.items():
            path = os.path.join(self.out, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write("\n".join(lines) + "\n")
        with open(os.path.join(self.out, "truth.json"), "w") as fh:
            json.dump(sorted(self.truth, key=lambda e: (e["file"], e["first"])), fh, indent=1)


def carriers(rng, count):
    """Real text files without anything secret-like in them."""
    stdlib = sysconfig.get_paths()["stdlib"]
    candidates = sorted(p for p in glob.glob(os.path.join(stdlib, "*.py")) if "test" not in p)
    candidates += sorted(glob.glob("/usr/share/doc/*/README*") + glob.glob("/usr/share/doc/*/copyright"))
    rng.shuffle(candidates)
    out = []
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError):
            continue
        if SUSPECT.search(text) or len(text) < 2000:
            continue
        out.append((path, text.splitlines()[:400]))
        if len(out) == count:
            break
    return out


def secrets(f):
    """(kind, value) generators for format-valid fake credentials."""
    return [
        ("github-pat", lambda: f.crc_token("ghp_")),
        ("github-oauth", lambda: f.crc_token("gho_")),
        ("github-app", lambda: f.crc_token("ghs_")),
        ("github-fine-grained", lambda: f"github_pat_11{f.upper(20)}_{f.alnum(59)}"),
        ("gitlab-pat", lambda: "glpat-" + f.urlsafe(20)),
        ("aws-access-key-id", lambda: f.aws_key_id()),
        ("gcp-api-key", lambda: "AIza" + f.urlsafe(35)),
        ("openai-legacy", f.openai_legacy),
        ("openai-project", f.openai_project),
        ("anthropic", f.anthropic),
        ("huggingface", lambda: "hf_" + f.s("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", 34)),
        ("groq", lambda: "gsk_" + f.alnum(52)),
        ("stripe-live", f.stripe),
        ("stripe-restricted", lambda: f.stripe("rk_live_")),
        ("slack-bot", f.slack_bot),
        ("slack-user", f.slack_user),
        ("slack-webhook", f.slack_webhook),
        ("sendgrid", f.sendgrid),
        ("npm", lambda: f.crc_token("npm_")),
        ("pypi", f.pypi),
        ("cargo", lambda: "cio" + f.alnum(32)),
        ("dockerhub", lambda: "dckr_pat_" + f.urlsafe(27)),
        ("digitalocean", lambda: "dop_v1_" + f.hex(64)),
        ("azure-ad-secret", f.azure_client_secret),
        ("telegram", f.telegram),
        ("jwt", f.jwt),
        ("vault", lambda: "hvs.CAESI" + f.urlsafe(86)),
        ("shopify", lambda: "shpat_" + f.hex(32)),
        ("databricks", lambda: "dapi" + f.hex(32)),
    ]


def assignment(f, rng, name, value, style):
    if style == "py":
        return f'{name} = "{value}"'
    if style == "env":
        return f"{name}={value}"
    if style == "yaml":
        return f"  {name.lower()}: {value}"
    if style == "json":
        return f'  "{name.lower()}": "{value}",'
    if style == "js":
        return f"const {name.lower()} = '{value}';"
    if style == "go":
        return f'\t{name.title().replace("_", "")}: "{value}",'
    return f"{name}={value}"


def weak_password(f):
    return f.password()


def main():
    out, seed = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 7
    os.makedirs(out, exist_ok=True)
    s = Set(out, seed)
    f, rng = s.f, s.rng
    gens = secrets(f)
    names = {
        "github-pat": "GITHUB_TOKEN", "github-oauth": "GH_OAUTH_TOKEN", "github-app": "GH_APP_TOKEN",
        "github-fine-grained": "GH_TOKEN", "gitlab-pat": "GITLAB_TOKEN", "aws-access-key-id": "AWS_ACCESS_KEY_ID",
        "gcp-api-key": "GOOGLE_API_KEY", "openai-legacy": "OPENAI_API_KEY", "openai-project": "OPENAI_API_KEY",
        "anthropic": "ANTHROPIC_API_KEY", "huggingface": "HF_TOKEN", "groq": "GROQ_API_KEY",
        "stripe-live": "STRIPE_SECRET_KEY", "stripe-restricted": "STRIPE_KEY", "slack-bot": "SLACK_BOT_TOKEN",
        "slack-user": "SLACK_USER_TOKEN", "slack-webhook": "SLACK_WEBHOOK_URL", "sendgrid": "SENDGRID_API_KEY",
        "npm": "NPM_TOKEN", "pypi": "TWINE_PASSWORD", "cargo": "CARGO_REGISTRY_TOKEN", "dockerhub": "DOCKERHUB_TOKEN",
        "digitalocean": "DIGITALOCEAN_TOKEN", "azure-ad-secret": "AZURE_CLIENT_SECRET", "telegram": "TELEGRAM_BOT_TOKEN",
        "jwt": "ID_TOKEN", "vault": "VAULT_TOKEN", "shopify": "SHOPIFY_ACCESS_TOKEN", "databricks": "DATABRICKS_TOKEN",
    }

    # 1. Source files: real modules with plants and decoys between top-level statements.
    real = carriers(rng, 160)
    for i, (path, lines) in enumerate(real):
        ext = ".py" if path.endswith(".py") else ".txt"
        rel = s.new_file(f"files/src/mod{i:03d}{ext}", lines)
        for _ in range(rng.randint(2, 5)):
            tops = [k for k, line in enumerate(s.files[rel]) if line and not line[0].isspace()] or [0]
            at = rng.choice(tops)
            if rng.random() < 0.72:
                kind, gen = rng.choice(gens)
                style = rng.choice(["py", "py", "js", "go", "json"])
                s.add(rel, [assignment(f, rng, names[kind], gen(), style)], kind, True, at)
            else:
                kind, line = decoy(f, rng)
                s.add(rel, [line], kind, False, at)
        # Generic passwords in code.
        if rng.random() < 0.5:
            tops = [k for k, line in enumerate(s.files[rel]) if line and not line[0].isspace()] or [0]
            s.add(rel, [rng.choice([
                f'DB_PASSWORD = "{f.password()}"',
                f'    password="{f.password()}",',
                f'conn = connect(host="db", user="app", password="{f.password()}")',
                f'SECRET_KEY = "{f.password(40)}"',
            ])], "generic-password", True, rng.choice(tops))

    # 2. Config files and dot-files.
    for i in range(60):
        d = f"files/svc{i:02d}"
        env = s.new_file(f"{d}/.env", ["# service configuration", "APP_ENV=production", "LOG_LEVEL=info", "PORT=8080"])
        for _ in range(rng.randint(2, 4)):
            kind, gen = rng.choice(gens)
            s.add(env, [f"{names[kind]}={gen()}"], kind, True)
        s.add(env, [f"DB_PASSWORD={f.password()}"], "generic-password", True)
        s.add(env, [f"DATABASE_URL=postgres://app:{urlpw(f)}@db.internal:5432/app"], "database-url", True)
        kind, line = decoy(f, rng)
        s.add(env, [line.replace('"', "")], kind, False)
        s.add(env, ["REDIS_PASSWORD=${REDIS_PASSWORD}"], "placeholder", False)

        yml = s.new_file(f"{d}/config.yaml", ["server:", "  host: 0.0.0.0", "  port: 8080", "database:",
                                              "  host: db.internal", "  user: app"])
        s.add(yml, [f"  password: {f.password().lstrip('!*&#%@')}"], "generic-password", True)
        s.add(yml, ["  pool: 10", "integrations:"], "filler", None)
        kind, gen = rng.choice(gens)
        s.add(yml, [f"  {names[kind].lower()}: {gen()}"], kind, True)
        s.add(yml, [f"  mongo_url: mongodb+srv://svc:{urlpw(f)}@cluster0.abcde.mongodb.net/app"], "database-url", True)
        s.add(yml, ["  api_key: ${API_KEY}"], "placeholder", False)

        js = s.new_file(f"{d}/settings.json", ["{", '  "name": "svc",', '  "region": "eu-west-1",'])
        kind, gen = rng.choice(gens)
        s.add(js, [f'  "{names[kind].lower()}": "{gen()}",'], kind, True)
        s.add(js, [f'  "password": "{f.password()}",'], "generic-password", True)
        s.add(js, [f'  "request_id": "{f.uuid()}",'], "uuid", False)
        s.add(js, [f'  "checksum": "{f.hex(64)}"'], "digest", False)
        s.files[js].append("}")

        props = s.new_file(f"{d}/application.properties", ["spring.application.name=svc", "server.port=8080",
                                                            "spring.datasource.username=app"])
        s.add(props, [f"spring.datasource.password={f.password().lstrip('!*&#%@')}"], "generic-password", True)
        s.add(props, [f"spring.datasource.url=jdbc:mysql://db:3306/app?user=app&password={urlpw(f)}"], "database-url", True)

        dot = rng.choice(["npmrc", "pypirc", "netrc", "git-credentials", "docker", "aws"])
        if dot == "npmrc":
            rel = s.new_file(f"{d}/.npmrc", ["registry=https://registry.npmjs.org/"])
            s.add(rel, [f"//registry.npmjs.org/:_authToken={f.crc_token('npm_')}"], "npm", True)
        elif dot == "pypirc":
            rel = s.new_file(f"{d}/.pypirc", ["[distutils]", "index-servers = pypi", "[pypi]", "username = __token__"])
            s.add(rel, [f"password = {f.pypi()}"], "pypi", True)
        elif dot == "netrc":
            rel = s.new_file(f"{d}/.netrc", [])
            s.add(rel, [f"machine api.acme.io login deploy password {f.password().lstrip('!*&#%@')}"], "netrc", True)
        elif dot == "git-credentials":
            rel = s.new_file(f"{d}/.git-credentials", [])
            s.add(rel, [f"https://ci-bot:{f.crc_token('ghp_')}@github.com"], "github-pat", True)
        elif dot == "docker":
            rel = s.new_file(f"{d}/.docker/config.json", ['{', '  "auths": {'])
            s.add(rel, [f'    "registry.acme.io": {{"auth": "{f.basic()}"}}'], "docker-auth", True)
            s.files[rel] += ["  }", "}"]
        else:
            rel = s.new_file(f"{d}/.aws/credentials", ["[default]"])
            s.add(rel, [f"aws_access_key_id = {f.aws_key_id()}"], "aws-access-key-id", True)
            s.add(rel, [f"aws_secret_access_key = {f.aws_secret()}"], "aws-secret-access-key", True)
        if i % 6 == 0:
            rel = s.new_file(f"{d}/keys/deploy_key", [])
            s.add(rel, f.pem("OPENSSH PRIVATE KEY", 400).split("\n"), "private-key", True)
            rel = s.new_file(f"{d}/keys/deploy_key.pub", [])
            s.add(rel, [f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{f.b64(43)} deploy@ci"], "public-key", False)
        if i % 10 == 0:
            rel = s.new_file(f"{d}/gcp-sa.json", [])
            sa = ["{", '  "type": "service_account",', '  "project_id": "acme-prod",',
                  f'  "private_key_id": "{f.hex(40)}",',
                  '  "private_key": "' + f.pem("PRIVATE KEY", 600).replace("\n", "\\n") + '\\n",',
                  '  "client_email": "svc@acme-prod.iam.gserviceaccount.com"', "}"]
            s.add(rel, sa, "gcp-service-account", True)
            rel = s.new_file(f"{d}/tls/server.crt", [])
            s.add(rel, f.pem("CERTIFICATE", 500).split("\n"), "certificate", False)

    # 3. Logs.
    for i in range(40):
        rel = s.new_file(f"files/logs/app{i:02d}.log", [])
        for _ in range(rng.randint(20, 40)):
            s.files[rel].append(log_line(f, rng, rng.choice(["GET /health 200 1ms", "job finished in 3.2s",
                                                             "cache hit ratio 0.93", "worker 4 idle"])))
        for _ in range(rng.randint(2, 4)):
            at = rng.randrange(len(s.files[rel]))
            choice = rng.random()
            if choice < 0.3:
                s.add(rel, [log_line(f, rng, f"connecting to postgresql://app:{urlpw(f)}@10.0.3.7:5432/orders")], "database-url", True, at)
            elif choice < 0.5:
                s.add(rel, [log_line(f, rng, f"outgoing request headers: {{'Authorization': 'Bearer {f.urlsafe(40)}'}}")], "bearer", True, at)
            elif choice < 0.8:
                kind, gen = rng.choice(gens)
                s.add(rel, [log_line(f, rng, f"loaded credentials {names[kind]}={gen()}")], kind, True, at)
            else:
                kind, line = decoy(f, rng)
                s.add(rel, [log_line(f, rng, line)], kind, False, at)
        at = rng.randrange(len(s.files[rel]))
        s.add(rel, [log_line(f, rng, f"request_id={f.uuid()} trace={f.hex(32)} took 12ms")], "uuid", False, at)

    # 4. Diffs.
    for i in range(40):
        rel = s.new_file(f"files/diffs/change{i:02d}.diff", [
            "diff --git a/deploy/settings.py b/deploy/settings.py", "index 3f2a1c9..8b7d6e0 100644",
            "--- a/deploy/settings.py", "+++ b/deploy/settings.py", "@@ -10,6 +10,9 @@ DEBUG = False",
            " ALLOWED_HOSTS = ['*']", "-TIMEOUT = 30", "+TIMEOUT = 60"])
        for _ in range(rng.randint(2, 3)):
            if rng.random() < 0.75:
                kind, gen = rng.choice(gens)
                s.add(rel, [f'+{names[kind]} = "{gen()}"'], kind, True)
            else:
                kind, line = decoy(f, rng)
                s.add(rel, ["+" + line], kind, False)
        s.add(rel, [f'+DATABASES["default"]["PASSWORD"] = "{f.password()}"'], "generic-password", True)
        s.files[rel] += [" ", " INSTALLED_APPS = []"]

    # 5. Terminal transcripts: what agents run.
    for i in range(60):
        rel = s.new_file(f"files/transcripts/session{i:02d}.txt", ["$ cd /srv/app", "$ git status",
                                                                   "On branch main", "nothing to commit, working tree clean"])
        for _ in range(rng.randint(3, 5)):
            pw = f.password()
            c = rng.randrange(12)
            if c == 0:
                s.add(rel, [f"$ mysql -h db.internal -u root -p'{pw}' orders -e 'select 1'"], "cli-mysql", True)
            elif c == 1:
                s.add(rel, [f"$ echo '{pw}' | docker login -u deploy --password-stdin registry.acme.io", "Login Succeeded"], "cli-password-stdin", True)
            elif c == 2:
                s.add(rel, [f"$ export DB_PASSWORD='{pw}'"], "generic-password", True)
            elif c == 3:
                s.add(rel, [f"$ curl -s -u admin:{pw.replace(' ', '')} https://jenkins.acme.io/api/json"], "cli-curl", True)
            elif c == 4:
                s.add(rel, [f"$ sshpass -p '{pw}' ssh deploy@10.0.0.12 uptime"], "cli-sshpass", True)
            elif c == 5:
                s.add(rel, [f"$ PGPASSWORD='{pw}' psql -h db -U app -c 'select 1'"], "generic-password", True)
            elif c == 6:
                kind, gen = rng.choice(gens)
                s.add(rel, [f"$ export {names[kind]}={gen()}"], kind, True)
            elif c == 7:
                s.add(rel, ["$ env | grep -i token", f"GITHUB_TOKEN={f.crc_token('ghp_')}"], "github-pat", True)
            elif c == 8:
                s.add(rel, [f"$ redis-cli -h cache -a '{pw}' ping", "PONG"], "cli-redis", True)
            elif c == 9:
                s.add(rel, [f"$ curl -H 'Authorization: Basic {f.basic()}' https://nexus.acme.io/service/rest/v1/status"], "basic-auth", True)
            elif c == 10:
                s.add(rel, [f"$ mongosh 'mongodb://admin:{urlpw(f)}@10.0.0.9:27017/admin'"], "database-url", True)
            else:
                kind, line = decoy(f, rng)
                s.add(rel, [line], kind, False)
        s.files[rel] += ["$ exit"]

    # Entries with secret None are fillers, not labels.
    s.truth = [e for e in s.truth if e["secret"] is not None]
    s.write()
    plants = sum(1 for e in s.truth if e["secret"])
    decoys = sum(1 for e in s.truth if not e["secret"])
    print(f"{plants} plants, {decoys} decoys in {len(s.files)} files under {out}")


def urlpw(f):
    pw = f.password(16)
    for a, b in ((":", "!"), ("/", "_"), ("@", "#"), ("?", "~"), ("#", "%23")):
        pw = pw.replace(a, b)
    return pw


def log_line(f, rng, message):
    level = rng.choice(["INFO", "DEBUG", "WARN"])
    return f"2026-11-0{rng.randint(1, 9)}T1{rng.randint(0, 9)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}.{rng.randint(100, 999)}Z {level} [svc] {message}"


def decoy(f, rng):
    """(kind, line) of something that looks like a secret and is not one."""
    c = rng.randrange(16)
    if c == 0:
        return "aws-example", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE"
    if c == 1:
        return "aws-example", 'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"'
    if c == 2:
        return "bad-checksum", f'GITHUB_TOKEN = "{f.bad_crc_token("ghp_")}"'
    if c == 3:
        return "placeholder", 'STRIPE_SECRET_KEY = "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx"'
    if c == 4:
        return "placeholder", rng.choice(['password = "${DB_PASSWORD}"', "API_TOKEN=<your-api-token>",
                                          'DB_PASSWORD = "changeme"', "token: {{ .Values.token }}",
                                          'OPENAI_API_KEY = "sk-..."', "SLACK_BOT_TOKEN=xoxb-not-a-real-token-this-will-not-work"])
    if c == 5:
        return "digest", f'checksum = "{f.hex(64)}"'
    if c == 6:
        return "digest", f"commit {f.hex(40)}"
    if c == 7:
        return "uuid", f'session_id = "{f.uuid()}"'
    if c == 8:
        raw = bytes(f.rng.getrandbits(8) for _ in range(64))
        return "lockfile", f'"integrity": "sha512-{base64.b64encode(raw).decode()}",'
    if c == 9:
        return "code", rng.choice(["password = get_password()", "token = self.token", "api_key = settings.API_KEY",
                                   "secret = os.environ['SECRET']"])
    if c == 10:
        return "public-key", f"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ{f.b64(300)} ops@bastion"
    if c == 11:
        return "publishable", f'STRIPE_PUBLISHABLE_KEY = "pk_live_{f.alnum(24)}"'
    if c == 12:
        return "placeholder", "DATABASE_URL=postgres://user:password@localhost:5432/app"
    if c == 13:
        return "base64-data", f'icon = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA{f.b64(120)}"'
    if c == 14:
        return "digest", f"sha256sum: {f.hex(64)}  release-1.4.2.tar.gz"
    return "placeholder", 'AZURE_CLIENT_SECRET = "<client-secret>"'


if __name__ == "__main__":
    main()
