# A throwaway OAuth 2.0 authorization server for mailretr's integration
# tests (started by tests/support/oauth.rs). Python's standard library plus
# python3-cryptography (RS256 verification of service account JWTs).
#
#   oauth_server.py PORT OPTIONS_JSON
#
# Endpoints:
#   GET  /authorize   approves at once: 302 to redirect_uri with code+state
#   POST /token       authorization_code (PKCE S256 checked), refresh_token
#                     (rotated: the old one stops working), device_code
#                     (pending once, then approved), client_credentials,
#                     jwt-bearer (signature, iss, aud, exp and sub checked)
#   POST /device      device authorization (RFC 8628)
#   POST /introspect  RFC 7662, what Dovecot's oauth2 passdb asks
#   POST /revoke      RFC 7009: a refresh token and its access tokens
#   POST /admin/client client_id=X[&client_secret=S]&user=U[&slow_down=1]:
#                     registers a client; U is whom its device and app
#                     tokens are for; with slow_down its second device
#                     poll is answered slow_down
#   GET  /log         every token request so far, as JSON (no secrets)
#
# Clients: OPTIONS_JSON {"clients": {"id": "secret-or-null"}, "lifetime":
# seconds, "sa_email": ..., "sa_public_key": path}. A client with a secret
# must send it.

import base64
import hashlib
import json
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

PORT = int(sys.argv[1])
OPTS = json.loads(sys.argv[2])
LIFETIME = int(OPTS.get("lifetime", 4))
CLIENTS = OPTS.get("clients", {})
BASE = "http://127.0.0.1:%d" % PORT

lock = threading.Lock()
codes = {}       # code -> dict(client, redirect, challenge, user)
refresh = {}     # refresh token -> dict(client, user, family)
access = {}      # access token -> dict(user, exp, family)
revoked = set()  # families
devices = {}     # device_code -> dict(client, polls, user)
users = {}       # client_id -> user (device and app tokens)
slow = set()     # clients whose second device poll gets slow_down
log = []         # token requests: dict(grant, client, outcome, ...)

public_key = None
if OPTS.get("sa_public_key"):
    with open(OPTS["sa_public_key"], "rb") as f:
        public_key = serialization.load_pem_public_key(f.read())


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def issue(client, user, family=None, with_refresh=True):
    family = family or secrets.token_hex(8)
    a = "at-" + secrets.token_urlsafe(24)
    access[a] = {"user": user, "exp": time.time() + LIFETIME, "family": family}
    out = {"access_token": a, "token_type": "Bearer", "expires_in": LIFETIME}
    if with_refresh:
        r = "rt-" + secrets.token_urlsafe(24)
        refresh[r] = {"client": client, "user": user, "family": family}
        out["refresh_token"] = r
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def error(self, code, description="", status=400):
        self.reply(status, {"error": code, "error_description": description})

    def form(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n).decode()
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}

    def client_ok(self, f):
        cid = f.get("client_id", "")
        if cid not in CLIENTS:
            return False
        want = CLIENTS[cid]
        return want is None or f.get("client_secret") == want

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        if url.path == "/authorize":
            if q.get("client_id") not in CLIENTS or q.get("code_challenge_method") != "S256":
                return self.error("invalid_request", "client or PKCE")
            code = "code-" + secrets.token_urlsafe(16)
            with lock:
                codes[code] = {
                    "client": q["client_id"],
                    "redirect": q["redirect_uri"],
                    "challenge": q["code_challenge"],
                    "user": q.get("login_hint") or users.get(q["client_id"], ""),
                }
            sep = "&" if "?" in q["redirect_uri"] else "?"
            loc = q["redirect_uri"] + sep + urllib.parse.urlencode(
                {"code": code, "state": q.get("state", "")})
            self.send_response(302)
            self.send_header("Location", loc)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if url.path == "/log":
            with lock:
                return self.reply(200, log)
        self.error("not_found", status=404)

    def do_POST(self):
        path = urllib.parse.urlparse(self.path).path
        f = self.form()
        with lock:
            if path == "/token":
                return self.token(f)
            if path == "/device":
                if not self.client_ok(f):
                    return self.error("invalid_client", status=401)
                d = "dc-" + secrets.token_urlsafe(16)
                devices[d] = {"client": f["client_id"], "polls": 0}
                return self.reply(200, {
                    "device_code": d, "user_code": "WDJB-MJHT",
                    "verification_uri": BASE + "/activate",
                    "expires_in": 60, "interval": 1})
            if path == "/introspect":
                t = access.get(f.get("token", ""))
                if not t or t["exp"] < time.time() or t["family"] in revoked:
                    return self.reply(200, {"active": False})
                return self.reply(200, {"active": True, "username": t["user"],
                                        "exp": int(t["exp"])})
            if path == "/revoke":
                r = refresh.get(f.get("token", ""))
                if r:
                    revoked.add(r["family"])
                return self.reply(200, {})
            if path == "/admin/client":
                CLIENTS[f["client_id"]] = f.get("client_secret")
                users[f["client_id"]] = f.get("user", "")
                if f.get("slow_down"):
                    slow.add(f["client_id"])
                return self.reply(200, {})
        self.error("not_found", status=404)

    def token(self, f):
        grant = f.get("grant_type", "")
        entry = {"grant": grant, "client": f.get("client_id", ""), "time": time.time()}
        log.append(entry)

        def fail(code, why=""):
            entry["outcome"] = code
            return self.error(code, why)

        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self.jwt_bearer(f, entry, fail)
        if not self.client_ok(f):
            return fail("invalid_client", "unknown client or wrong secret")
        cid = f["client_id"]
        if grant == "authorization_code":
            c = codes.pop(f.get("code", ""), None)
            if not c or c["client"] != cid or c["redirect"] != f.get("redirect_uri"):
                return fail("invalid_grant", "unknown code")
            v = f.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=")
            if digest.decode() != c["challenge"]:
                return fail("invalid_grant", "PKCE verifier does not match")
            entry["outcome"] = "ok"
            return self.reply(200, issue(cid, c["user"]))
        if grant == "refresh_token":
            r = refresh.pop(f.get("refresh_token", ""), None)
            if not r or r["client"] != cid or r["family"] in revoked:
                return fail("invalid_grant", "Token has been expired or revoked.")
            entry["outcome"] = "ok"
            return self.reply(200, issue(cid, r["user"], r["family"]))
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            d = devices.get(f.get("device_code", ""))
            if not d or d["client"] != cid:
                return fail("invalid_grant", "unknown device code")
            d["polls"] += 1
            entry["poll"] = d["polls"]
            if d["polls"] == 1:
                return fail("authorization_pending")
            if d["polls"] == 2 and cid in slow:
                return fail("slow_down")
            del devices[f["device_code"]]
            entry["outcome"] = "ok"
            return self.reply(200, issue(cid, users.get(cid, "")))
        if grant == "client_credentials":
            if CLIENTS.get(cid) is None:
                return fail("unauthorized_client", "a public client has no credentials")
            entry["scope"] = f.get("scope", "")
            entry["outcome"] = "ok"
            return self.reply(200, issue(cid, users.get(cid, ""), with_refresh=False))
        return fail("unsupported_grant_type")

    def jwt_bearer(self, f, entry, fail):
        try:
            h, c, s = f.get("assertion", "").split(".")
            header = json.loads(b64url_decode(h))
            claims = json.loads(b64url_decode(c))
            if header.get("alg") != "RS256":
                return fail("invalid_grant", "alg")
            public_key.verify(b64url_decode(s), (h + "." + c).encode(),
                              padding.PKCS1v15(), hashes.SHA256())
        except Exception:
            return fail("invalid_grant", "bad signature")
        if claims.get("iss") != OPTS.get("sa_email"):
            return fail("invalid_grant", "iss")
        if claims.get("aud") != BASE + "/token":
            return fail("invalid_grant", "aud")
        if not claims.get("sub") or claims.get("exp", 0) < time.time():
            return fail("invalid_grant", "sub or exp")
        entry["sub"] = claims["sub"]
        entry["scope"] = claims.get("scope", "")
        entry["outcome"] = "ok"
        return self.reply(200, issue("sa", claims["sub"], with_refresh=False))


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
