"""How the client reaches Klaviyo: the proxy and the certificate authorities the environment names.

Read once per client (`Transport.from_environment`), for the one origin a run talks to; nothing here
runs per request. The rules follow curl and Python `requests` (so the 2.x connector's environment
keeps working unchanged):

- Proxy: for an https base_url `https_proxy`, else `HTTPS_PROXY`, else `all_proxy` / `ALL_PROXY`;
  for http (only the emulator on loopback) the same with `http_proxy` / `HTTP_PROXY`. A name in
  lowercase wins over any other spelling of it; an empty value counts as unset. A value without a
  scheme is an http:// proxy; http:// and https:// proxies are supported (https through CONNECT),
  SOCKS is not. `USER:PASSWORD@` in the URL (percent-encoded) becomes basic proxy authentication;
  the password is never shown.
- `no_proxy` / `NO_PROXY`: entries separated by commas or spaces; `*` matches every host; a name
  matches itself and its subdomains (`example.com`, `.example.com` and `*.example.com` alike); an IP
  address or CIDR network (`10.0.0.0/8`, `::1`) matches hosts written as addresses in it (names are
  not resolved); `:PORT` limits an entry to that port. Loopback is not special, as in curl and
  requests: a proxy set for http is used for `http://127.0.0.1:PORT` unless NO_PROXY lists it.
- Certificate authorities: the system store, plus the bundle in `SSL_CERT_FILE`, plus the one in
  `REQUESTS_CA_BUNDLE` (or, when that is unset, `CURL_CA_BUNDLE`, as requests reads it), plus the
  hashed directories of `SSL_CERT_DIR`. OpenSSL alone would read SSL_CERT_FILE and SSL_CERT_DIR
  *instead of* the system store; here they are trusted in addition. Verification is always on: no
  variable turns it off (an empty CURL_CA_BUNDLE, which once did in requests, is ignored).

A variable we cannot use (a SOCKS proxy, a bundle file that does not exist or holds no certificate)
is a `ConfigError` naming it, raised before any request.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from yarl import URL

from source_klaviyo.errors import ConfigError

# The variables this module reads (proxy names in any spelling of their case).
PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy", "no_proxy")
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_DIR")

_PROXY_SCHEMES = ("http", "https")
_ENTRY_SEPARATORS = re.compile(r"[,\s]+")


def is_transport_variable(name: str) -> bool:
    """Whether the environment variable `name` changes how the client connects (tests clear these)."""
    return name.lower() in PROXY_VARIABLES or name in CA_VARIABLES


def _lookup(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(the variable's name as spelled, its value) for `name` in any case, lowercase first; empty = unset."""
    others = sorted(key for key in environ if key.lower() == name and key not in (name, name.upper()))
    for spelled in (name, name.upper(), *others):
        value = environ.get(spelled, "").strip()
        if value:
            return spelled, value
    return None


@dataclass(frozen=True)
class Proxy:
    """The proxy a run goes through; `url` carries the credentials, `shown` never does."""

    url: URL = field(repr=False)
    variable: str
    shown: str
    secrets: tuple[str, ...] = field(repr=False, default=())

    @property
    def has_credentials(self) -> bool:
        return bool(self.url.raw_user or self.url.raw_password)

    def __str__(self) -> str:
        return f"the proxy {self.shown} set in {self.variable}"


def parse_proxy(variable: str, value: str) -> Proxy:
    """The proxy a variable's value names; `ConfigError` (naming the variable, never the value, which
    may hold a password) when it is not an http(s) proxy URL."""
    expected = "expected http://[USER:PASSWORD@]HOST:PORT"
    text = value if "://" in value else f"http://{value}"  # curl and requests read a bare host as http
    try:
        url = URL(text)
        host, port = url.host_subcomponent, url.port
    except ValueError:
        raise ConfigError(f"{variable} is not a valid proxy URL ({expected})") from None
    scheme = url.scheme.lower()
    if scheme not in _PROXY_SCHEMES:
        raise ConfigError(
            f"{variable} names a {scheme}:// proxy, which the connector does not support: give an http:// "
            "(or https://) proxy"
        )
    if not host:
        raise ConfigError(f"{variable} names no proxy host ({expected})")
    # Only what a proxy URL means: its path, query and fragment are dropped; IPv6 keeps its brackets.
    url = URL.build(scheme=scheme, user=url.raw_user, password=url.raw_password, host=host,
                    port=port, encoded=True)
    secrets = tuple(secret for secret in dict.fromkeys((url.raw_password, url.password, *_basic_tokens(url)))
                    if secret)
    return Proxy(url, variable, f"{scheme}://{url.host_subcomponent}:{port}", secrets)


def _basic_tokens(url: URL) -> tuple[str, ...]:
    # What the Proxy-Authorization header carries (UTF-8 or Latin-1 encoded): masked too, should an
    # error ever echo a header.
    if not url.raw_user and not url.raw_password:
        return ()
    pair = f"{url.user or ''}:{url.password or ''}"
    tokens = [base64.b64encode(pair.encode())]
    with contextlib.suppress(UnicodeEncodeError):
        tokens.append(base64.b64encode(pair.encode("latin-1")))
    return tuple(token.decode() for token in tokens)


def no_proxy_matches(host: str, port: int, no_proxy: str) -> bool:
    """Whether the NO_PROXY list `no_proxy` sends `host:port` directly (rules in the module docstring).

    >>> no_proxy_matches("a.klaviyo.com", 443, "localhost, .klaviyo.com")
    True
    >>> no_proxy_matches("a.klaviyo.com", 443, "notklaviyo.com,127.0.0.0/8,a.klaviyo.com:8443")
    False
    """
    host = host.strip("[]").rstrip(".").lower()
    address = _address(host)
    for entry in _ENTRY_SEPARATORS.split(no_proxy.lower()):
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if not name or (entry_port is not None and entry_port != port):
            continue
        if address is not None:
            network = _network(name)
            if network is not None and address in network:
                return True
            continue
        name = name.removeprefix("*").strip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:443` -> ("host", 443); `[::1]:443` -> ("::1", 443); a bare IPv6 address keeps its colons."""
    if entry.startswith("["):
        address, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
        return address, int(port) if port.isdigit() else None
    name, colon, port = entry.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        return name, int(port)
    return entry, None


def choose_proxy(base: URL, environ: Mapping[str, str]) -> tuple[Proxy | None, str | None]:
    """(the proxy for `base`, or None; the NO_PROXY variable that sent it directly, if one did)."""
    scheme = base.scheme.lower()
    found = _lookup(environ, f"{scheme}_proxy") or _lookup(environ, "all_proxy")
    if found is None:
        return None, None
    no_proxy = _lookup(environ, "no_proxy")
    host, port = base.raw_host or "", base.port or (443 if scheme == "https" else 80)
    if no_proxy is not None and no_proxy_matches(host, port, no_proxy[1]):
        return None, no_proxy[0]
    return parse_proxy(*found), None


def _ca_sources(environ: Mapping[str, str]) -> tuple[list[tuple[str, str]], tuple[str, str] | None]:
    """(the bundle variables set, as (name, path); SSL_CERT_DIR as (name, paths) or None)."""
    files = [found for found in (_lookup_exact(environ, "SSL_CERT_FILE"),
                                 _lookup_exact(environ, "REQUESTS_CA_BUNDLE")
                                 or _lookup_exact(environ, "CURL_CA_BUNDLE")) if found]
    return files, _lookup_exact(environ, "SSL_CERT_DIR")


def ca_variables(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The CA variables `ssl_context` reads, without reading their files."""
    files, directories = _ca_sources(environ)
    return tuple(variable for variable, _ in files) + ((directories[0],) if directories else ())


def ssl_context(environ: Mapping[str, str]) -> tuple[ssl.SSLContext | None, tuple[str, ...]]:
    """(a context trusting the system store and every bundle the environment names, the variables
    used), or (None, ()) when none is set: aiohttp's default context, built at its import, serves."""
    files, directories = _ca_sources(environ)
    if not files and not directories:
        return None, ()
    # create_default_context loads paths.cafile / paths.capath (None when missing): SSL_CERT_FILE and
    # SSL_CERT_DIR of the process when set, in place of OpenSSL's own store, loaded here too so that both
    # are trusted. A file already loaded is not loaded again (here all four variables often name the
    # system bundle).
    paths = ssl.get_default_verify_paths()
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])  # as aiohttp's own context
    loaded = {os.path.realpath(path) for path in (paths.cafile, paths.capath) if path}

    def load(path: str, variable: str | None) -> None:
        real = os.path.realpath(path)
        if real not in loaded:
            _load(context, path, variable)
            loaded.add(real)

    for system in (paths.openssl_cafile, paths.openssl_capath):
        if system and os.path.exists(system):
            load(system, None)
    for variable, value in files:
        load(value, variable)
    if directories is not None:
        variable, value = directories
        for directory in filter(None, value.split(os.pathsep)):
            if not os.path.isdir(directory):
                raise ConfigError(f"{variable}={directory} is not a directory of CA certificates")
            load(directory, variable)
    return context, ca_variables(environ)


def _lookup_exact(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    value = environ.get(name, "").strip()
    return (name, value) if value else None


def _load(context: ssl.SSLContext, path: str, variable: str | None) -> None:
    where = f"{variable}={path}" if variable else path
    target = Path(path)
    try:
        if target.is_dir():
            context.load_verify_locations(capath=path)
        else:
            context.load_verify_locations(cafile=path)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file (it should name a PEM bundle of CA certificates)") from None
    except ssl.SSLError:
        raise ConfigError(f"{where} holds no PEM certificate: give a bundle of CA certificates") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} could not be read ({getattr(exc, 'strerror', None) or exc})") from None


@dataclass(frozen=True)
class Transport:
    """The route and the trust of a client's connections, with the words to explain their failures."""

    host: str
    proxy: Proxy | None = None
    bypassed_by: str | None = None  # the NO_PROXY variable that matched, when a proxy was set
    ssl: ssl.SSLContext | None = field(default=None, repr=False)
    ca_variables: tuple[str, ...] = ()

    @classmethod
    def from_environment(cls, base: URL, environ: Mapping[str, str] | None = None, *,
                         load: bool = True) -> Transport:
        """The transport for `base`; `load=False` names the CA variables without reading their files
        (no `ssl` context: for describing the route only)."""
        env = os.environ if environ is None else environ
        proxy, bypassed_by = choose_proxy(base, env)
        if base.scheme != "https" and (proxy is None or proxy.url.scheme != "https"):
            return cls(base.raw_host or "", proxy, bypassed_by)
        context, used = ssl_context(env) if load else (None, ca_variables(env))
        return cls(base.raw_host or "", proxy, bypassed_by, context, used)

    @property
    def secrets(self) -> tuple[str, ...]:
        return self.proxy.secrets if self.proxy is not None else ()

    def describe(self) -> str:
        """The route in words: 'through the proxy http://p:3128 set in HTTPS_PROXY', 'directly (...)'."""
        if self.proxy is not None:
            return f"through {self.proxy}"
        if self.bypassed_by is not None:
            return f"directly ({self.host} matches {self.bypassed_by})"
        return "directly"

    def summary(self) -> str | None:
        """One line for the log of a read when the environment changes the route or the trust, else None."""
        if self.proxy is None and self.bypassed_by is None and not self.ca_variables:
            return None
        trust = f"; trusting {self._trusted()}" if self.ca_variables else ""
        return f"connecting to {self.host} {self.describe()}{trust}"

    def _trusted(self) -> str:
        return "the system store" + "".join(f" and {variable}" for variable in self.ca_variables)

    def failure(self, exc: aiohttp.ClientError) -> tuple[str, bool]:
        """(what went wrong, in words an operator can act on; whether a retry may help)."""
        proxy = self.proxy
        at_proxy = proxy is not None and isinstance(exc, aiohttp.ClientConnectorError) and (
            exc.host == proxy.url.raw_host and exc.port == proxy.url.port)
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return self._untrusted(exc, at_proxy), False
        if isinstance(exc, aiohttp.ClientHttpProxyError) and proxy is not None:
            return self.proxy_answer(exc.status, exc.message)
        if isinstance(exc, aiohttp.ClientConnectorSSLError) and at_proxy and proxy is not None:
            return (f"the TLS handshake with {proxy} failed ({_ssl_reason(exc.os_error)}): if the proxy "
                    f"speaks plain HTTP, write http:// in {proxy.variable}"), False
        if isinstance(exc, aiohttp.ClientConnectorError) and at_proxy and proxy is not None:
            return f"could not connect to {proxy}: {_os_reason(exc)}", True
        return f"{type(exc).__name__}: {exc}{self._via()}", True

    def timeout(self, exc: TimeoutError, total: float, connect: float) -> str:
        """A timeout in words: of the connection set-up (`connect` s) or of the answer (`total` s)."""
        connecting = isinstance(exc, aiohttp.ConnectionTimeoutError)
        seconds = connect if connecting else total
        if self.proxy is None:
            return f"no answer within {seconds:g} s (timeout{' connecting' if connecting else ''})"
        if connecting:
            return (f"connecting through {self.proxy} timed out after {seconds:g} s (the proxy did not "
                    f"answer, or did not reach {self.host})")
        return (f"no answer within {seconds:g} s through {self.proxy} (timeout: the proxy did not answer, "
                f"or {self.host} behind it did not)")

    def _via(self) -> str:
        return f" (through {self.proxy})" if self.proxy is not None else ""

    def _untrusted(self, exc: aiohttp.ClientConnectorCertificateError, at_proxy: bool) -> str:
        error = exc.certificate_error
        reason = getattr(error, "verify_message", None) or str(error)
        fix = "put its CA certificate (PEM) in SSL_CERT_FILE or REQUESTS_CA_BUNDLE"
        if at_proxy and self.proxy is not None:
            return (f"the TLS certificate of {self.proxy} is not trusted ({reason}): {fix}; "
                    f"trusted now: {self._trusted()}")
        where = f"{self.host}:{exc.port}"
        if self.proxy is not None:
            return (f"the TLS certificate presented for {where} through {self.proxy} is not trusted "
                    f"({reason}): a proxy that inspects TLS signs with its own certificate authority, "
                    f"{fix}; trusted now: {self._trusted()}")
        return (f"the TLS certificate of {where} is not trusted ({reason}): if a proxy or firewall "
                f"inspects TLS, {fix}; trusted now: {self._trusted()}")

    def proxy_answer(self, status: int, message: str) -> tuple[str, bool]:
        """The proxy's own error answer (to CONNECT, or a plain-http 407) in words; retryable or not."""
        proxy = self.proxy
        assert proxy is not None
        answer = f"{status} {message}".strip()
        if status == 407:
            if proxy.has_credentials:
                return (f"{proxy} refused the user name and password given in it ({answer}): "
                        "check them"), False
            return (f"{proxy} requires credentials ({answer}): give them in {proxy.variable} as "
                    "http://USER:PASSWORD@HOST:PORT (percent-encoded)"), False
        if status >= 500:
            return f"{proxy} could not open a tunnel to {self.host} ({answer})", True
        return (f"{proxy} refused to open a tunnel to {self.host} ({answer}): allow that host on the "
                f"proxy, or list it in NO_PROXY if it can be reached directly"), False


def _ssl_reason(error: OSError) -> str:
    return getattr(error, "reason", None) or getattr(error, "strerror", None) or type(error).__name__


def _os_reason(exc: aiohttp.ClientConnectorError) -> str:
    error = exc.os_error
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is a proxy listening there?)"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"its host name does not resolve ({error.strerror or error})"
    return error.strerror or str(error) or type(error).__name__
