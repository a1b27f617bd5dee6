"""TLS (memcached -Z) and ASCII authentication (memcached -Y) from Python, against real
memcached with certificates made by the test (the openssl CLI): each failure is its own
exception class, and a forked child opens its own TLS session."""

import os
import subprocess

import pytest

import multiput
from multiput import exceptions as exc


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                 "-subj", f"/CN={ca}", "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "server.ext", cwd=d)
    return d


@pytest.fixture
def tls_server(memcached_factory, pki):
    opts = "ssl_chain_cert=%s,ssl_key=%s" % (pki / "server.crt", pki / "server.key")
    (s,) = memcached_factory(1, extra=["-Z", "-o", opts], listening_only=True)
    return s


def test_get_set_and_multi_over_tls(tls_server, pki):
    c = multiput.Client([tls_server.address], tls_ca=str(pki / "ca.crt"))
    c.set("tls:k", "over tls")
    assert c.get("tls:k") == "over tls"
    c.set_many({"tls:%d" % i: i for i in range(50)})
    got = c.get_many(["tls:%d" % i for i in range(50)])
    assert got == {"tls:%d" % i: i for i in range(50)}
    big = b"x" * (900 * 1024)
    c.set("tls:big", big)
    assert c.get("tls:big") == big


def test_replicated_over_tls(memcached_factory, pki):
    opts = "ssl_chain_cert=%s,ssl_key=%s" % (pki / "server.crt", pki / "server.key")
    servers = memcached_factory(3, extra=["-Z", "-o", opts], listening_only=True)
    c = multiput.Client([s.address for s in servers], replicas=2, tls_ca=str(pki / "ca.crt"))
    c.set("rep:k", {"a": 1})
    assert c.get("rep:k") == {"a": 1}


def test_a_fleet_where_one_server_is_tls_only(tls_server, pki, memcached_factory):
    (plain,) = memcached_factory(1)
    c = multiput.Client([tls_server.address, plain.address], replicas=2, tls_ca=str(pki / "ca.crt"),
                        tls_servers=[tls_server.address])
    c.set("mixed:k", [1, 2])
    assert c.get("mixed:k") == [1, 2]
    assert plain.raw_get("mixed:k") is not None  # the plain copy is there too


def test_each_tls_failure_is_its_own_exception(tls_server, pki, memcached_factory):
    other = multiput.Client([tls_server.address], tls_ca=str(pki / "other-ca.crt"))
    with pytest.raises(exc.CertificateUntrustedError) as e:
        other.get("x")
    assert e.value.problem == "untrusted_certificate"
    assert isinstance(e.value, exc.TlsError) and isinstance(e.value, exc.ConnectionError)
    assert "tls_ca" in str(e.value)

    named = multiput.Client([tls_server.address], tls_ca=str(pki / "ca.crt"), tls_server_name="memcached.example")
    with pytest.raises(exc.CertificateHostnameError):
        named.get("x")

    plain_client = multiput.Client([tls_server.address])
    with pytest.raises(exc.ServerRequiresTlsError):
        plain_client.get("x")

    (plain,) = memcached_factory(1)
    tls_client = multiput.Client([plain.address], tls_ca=str(pki / "ca.crt"))
    with pytest.raises(exc.ServerNotTlsError):
        tls_client.get("x")

    with pytest.raises(multiput.ConfigError):
        multiput.Client([plain.address], tls_ca=str(pki / "missing.pem"))


def test_ascii_authentication(memcached_factory, tmp_path):
    auth = tmp_path / "auth"
    auth.write_text("app:s3cret\n")
    (s,) = memcached_factory(1, extra=["-Y", str(auth)], listening_only=True)
    c = multiput.Client([s.address], username="app", password="s3cret")
    c.set("auth:k", 1)
    assert c.get("auth:k") == 1
    wrong = multiput.Client([s.address], username="app", password="wrong-pw")
    with pytest.raises(exc.AuthenticationError) as e:
        wrong.get("auth:k")
    assert "wrong-pw" not in str(e.value)
    with pytest.raises(exc.AuthenticationError):
        multiput.Client([s.address]).get("auth:k")
    with pytest.raises(multiput.ConfigError):
        multiput.Client([s.address], username="app")


def test_a_forked_child_opens_its_own_tls_session(tls_server, pki):
    c = multiput.Client([tls_server.address], tls_ca=str(pki / "ca.crt"))
    c.set("fork:k", "parent")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: its own connection, never the parent's TLS session
        try:
            c.set("fork:child", "child")
            ok = c.get("fork:k") == "parent" and c.get("fork:child") == "child"
            os.write(w, b"ok" if ok else b"bad")
        except BaseException as e:  # noqa: BLE001 - report anything to the parent
            os.write(w, repr(e).encode()[:200])
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 256) == b"ok"
    os.close(r)
    # The parent's connection is intact.
    assert c.get("fork:child") == "child"
    assert c.get("fork:k") == "parent"


def test_django_options_carry_tls(tls_server, pki):
    from multiput.django import MultiputCache

    cache = MultiputCache(tls_server.address, {"OPTIONS": {"tls_ca": str(pki / "ca.crt")}})
    cache.set("dj:k", "v")
    assert cache.get("dj:k") == "v"
