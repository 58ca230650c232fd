"""Format-valid fake credentials, for rule examples and the labelled accuracy set.

Every value here is random and was never issued by any provider. Formats follow the
providers' published token formats (prefixes, lengths, alphabets, checksums).
"""
import base64
import json
import random
import string
import zlib

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ALNUM = string.ascii_letters + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
B64 = string.ascii_letters + string.digits + "+/"
URLSAFE = string.ascii_letters + string.digits + "-_"


class Fakes:
    def __init__(self, seed=0):
        self.rng = random.Random(seed)

    def s(self, alphabet, n):
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def b62(self, n):
        return self.s(B62, n)

    def alnum(self, n):
        return self.s(ALNUM, n)

    def hex(self, n):
        return self.s(HEX, n)

    def HEX(self, n):
        return self.s(HEX.upper(), n)

    def lower(self, n):
        return self.s(LOWER_ALNUM, n)

    def upper(self, n):
        return self.s(UPPER_ALNUM, n)

    def b32(self, n):
        return self.s(B32, n)

    def b64(self, n):
        return self.s(B64, n)

    def urlsafe(self, n):
        return self.s(URLSAFE, n)

    def digits(self, n):
        return self.s(string.digits, n)

    def uuid(self):
        h = self.hex(32)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    @staticmethod
    def base62(n, width=6):
        out = ""
        while n:
            n, r = divmod(n, 62)
            out = B62[r] + out
        return out.rjust(width, "0")

    def crc_token(self, prefix):
        body = self.b62(30)
        return prefix + body + self.base62(zlib.crc32(body.encode()))

    def bad_crc_token(self, prefix):
        tok = self.crc_token(prefix)
        last = tok[-1]
        return tok[:-1] + ("A" if last != "A" else "B")

    def password(self, n=None):
        n = n or self.rng.randint(12, 20)
        symbols = "!#%^*-_+=.,:?~"
        chars = [self.rng.choice(string.ascii_lowercase), self.rng.choice(string.ascii_uppercase),
                 self.rng.choice(string.digits), self.rng.choice(symbols)]
        chars += [self.rng.choice(ALNUM + symbols) for _ in range(n - 4)]
        self.rng.shuffle(chars)
        return "".join(chars)

    def jwt(self):
        header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=").decode()
        payload = base64.urlsafe_b64encode(json.dumps({
            "sub": self.digits(8), "name": self.alnum(8), "iat": 1700000000 + self.rng.randint(0, 10**7),
        }).encode()).rstrip(b"=").decode()
        return f"{header}.{payload}.{self.urlsafe(43)}"

    def pem_body(self, nbytes=900):
        raw = bytes(self.rng.getrandbits(8) for _ in range(nbytes))
        b = base64.b64encode(b"\x30\x82" + raw).decode()
        return "\n".join(b[i:i + 64] for i in range(0, len(b), 64))

    def pem(self, label="RSA PRIVATE KEY", nbytes=900):
        return f"-----BEGIN {label}-----\n{self.pem_body(nbytes)}\n-----END {label}-----"

    def pypi(self):
        raw = b"\x02\x01\x08pypi.org\x02" + bytes(self.rng.getrandbits(8) for _ in range(60))
        return "pypi-" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def basic(self, user=None, password=None):
        user = user or self.rng.choice(["deploy", "ci-bot", "svc_backup", "admin2"])
        password = password or self.password()
        return base64.b64encode(f"{user}:{password}".encode()).decode()

    def kube_key(self):
        return base64.b64encode(self.pem("RSA PRIVATE KEY", 600).encode()).decode()

    def anthropic(self, kind="api03"):
        return f"sk-ant-{kind}-" + self.urlsafe(93) + "AA"

    def openai_legacy(self):
        return "sk-" + self.alnum(20) + "T3BlbkFJ" + self.alnum(20)

    def openai_project(self):
        return "sk-proj-" + self.urlsafe(74) + "T3BlbkFJ" + self.urlsafe(74)

    def aws_key_id(self, prefix="AKIA"):
        return prefix + self.b32(16)

    def aws_secret(self):
        return self.s(string.ascii_letters + string.digits + "/+", 40)

    def azure_account_key(self):
        return self.b64(86) + "=="

    def azure_client_secret(self):
        return self.s(ALNUM + "_~.-", 3) + self.digits(1) + "Q~" + self.s(ALNUM + "_~.-", 34)

    def slack_bot(self):
        return f"xoxb-{self.digits(12)}-{self.digits(13)}-{self.alnum(24)}"

    def slack_user(self):
        return f"xoxp-{self.digits(12)}-{self.digits(12)}-{self.digits(13)}-{self.hex(32)}"

    def slack_webhook(self):
        return f"https://hooks.slack.com/services/T{self.upper(8)}/B{self.upper(10)}/{self.alnum(24)}"

    def stripe(self, prefix="sk_live_"):
        return prefix + "51" + self.alnum(97)

    def sendgrid(self):
        return f"SG.{self.urlsafe(22)}.{self.urlsafe(43)}"

    def telegram(self):
        return f"{self.digits(10)}:AA{self.urlsafe(33)}"

    def discord_bot(self):
        return f"M{self.urlsafe(25)}.{self.urlsafe(6)}.{self.urlsafe(38)}"

    def gitlab(self, prefix="glpat-"):
        return prefix + self.urlsafe(20)
