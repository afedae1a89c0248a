#!/usr/bin/env python3
"""Makes the fuzz seeds in Fuzz/corpus/<harness>/ from the test fixtures and the tests' cases.

Each seed starts with the choice bytes its harness reads first (an encoding, a delimiter, a
block size...; see Fuzz/Harnesses), then the payload. Run from anywhere:
    python3 Fuzz/make_corpus.py
It needs zip, 7z, gzip, bzip2, xz, zstd and gpg (the openpgp seeds are messages to the test key
in Fuzz/keys/). Every seed is small: payloads are cut to 16 KiB.
"""
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import zipfile

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
FIX = os.path.join(ROOT, "Tests", "fixtures")
CORPUS = os.path.join(FUZZ, "corpus")
LIMIT = 16 << 10


def read(*parts):
    with open(os.path.join(*parts), "rb") as f:
        return f.read()


def seed(harness, data, prefix=b""):
    """Writes one seed, named by its content's hash (so that a rerun writes the same files)."""
    data = prefix + data[:LIMIT]
    folder = os.path.join(CORPUS, harness)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def fixtures(*suffixes):
    for d in (os.path.join(FIX, "drafts"), *[os.path.join(FIX, "clients", c) for c in sorted(os.listdir(os.path.join(FIX, "clients"))) if os.path.isdir(os.path.join(FIX, "clients", c))]):
        for name in sorted(os.listdir(d)):
            if name.endswith(suffixes):
                yield name, read(d, name)


ENCODINGS = {"utf16_export.csv": 1, "latin1_customers.csv": 2, "cp1252_prices.csv": 3}
DELIMITERS = b",;\t| "


def csv_seeds():
    for name, data in fixtures(".csv", ".tsv"):
        enc = ENCODINGS.get(name, 0)
        delim = b"\t" if name.endswith(".tsv") else b"|" if b"|" in data[:200] else b";" if data[:200].count(b";") > data[:200].count(b",") else b","
        for block, by_record, chunk in ((4, 0, 3), (0, 1, 1)):
            seed("csv", data, bytes([enc, DELIMITERS.index(delim), 0, block, by_record, chunk]))
    for text in (b'a,b\n"x""y",2\r\n"open', b'\xef\xbb\xbf', b'', b'a;b\n1;"2\n3";4\n', b"'q',x\n"):
        seed("csv", text, bytes([0, 0, 0, 2, 0, 1]))


PICKER_SEEDS = [
    rb'{"id": 1, "ts": "2026-09-06T07:53:23Z", "customer": {"id": 14593, "name": "alpha", "city": "Lyon"}, "amount": 46142.26, "active": true, "tags": []}',
    rb'{"id":-0.5e+3,"customer":{"name":"Zo\u00eb \"q\" \ud83d\ude00 tab\tend","id":null},"tags":["a",{"b":[1,2.0,false]}],"meta":{},"active":false}',
    b'\xef\xbb\xbf{ "id" : 0 , "amount" : -12E-2 ,\r\n "customer" : "flat" , "meta" : [ ] }\t',
    rb'{"id": 7, "id": 8, "customer": {"id": 1, "id": 2, "deep": {"a": [[[]]]}}, "active": null, "amount": "3.10"}',
    rb'{"G' + "röße".encode() + rb'": 1, "id": 2}',
    b"{}",
]


def json_seeds():
    for name, data in fixtures(".json"):
        seed("json", data)
        seed("jsonl", data, bytes([2 if b'"items"' in data else 0, 4, 2]))
    for doc in PICKER_SEEDS + [b"[1, 2.5e-3, \"x\", null, true, {\"a\": {\"b\": []}}]", b'"\\u0000\\ud800"', b"-0", b"[[[[[[[[[[]]]]]]]]]]"]:
        seed("json", doc)
    for name, data in fixtures(".jsonl"):
        seed("jsonl", data, bytes([0, 4, 2]))
        seed("jsonl", data, bytes([0, 0, 0]))
    seed("jsonl", b"\n".join(PICKER_SEEDS), bytes([0, 3, 2]))
    seed("jsonl", b'{"data": {"rows": [{"id": 1}, {"id": 2}]}}', bytes([3, 4, 2]))


def xlsx_parts(data):
    z = zipfile.ZipFile(io.BytesIO(data))
    names = z.namelist()
    sheet = next(n for n in sorted(names) if n.startswith("xl/worksheets/"))
    parts = [z.read(n) if n in names else b"" for n in ("xl/workbook.xml", "xl/_rels/workbook.xml.rels", "xl/styles.xml", "xl/sharedStrings.xml")]
    return parts, z.read(sheet)


def xlsx_seeds():
    for name, data in fixtures(".xlsx"):
        parts, sheet = xlsx_parts(data)
        seed("xlsx", b"\n--\n".join(parts + [sheet[:LIMIT // 2]]), bytes([2]))
        for part in parts + [sheet]:
            if part:
                seed("xml", part, bytes([3, 2, 1]))
    seed("xml", b'<?xml version="1.0"?><!-- c --><a x:r="1" s="2"><t>a &amp; &#233; <![CDATA[<x>]]></t><skip><y/></skip><si><r><t>Z</t></r></si></a>', bytes([1, 0, 1]))


def fixed_seeds():
    for name, data in fixtures(".dat", ".txt"):
        seed("fixedwidth", data, bytes([0, 2, 4]))
    seed("fixedwidth", "000042Zoë é       1234,5000020261001Y\n  -7\n".encode(), bytes([0, 0, 1]))


VALUES = ["42", "-0", "1.234,50", "-0,5", "1 234 567,5", "n/a", "", "  A ", "9223372036854775808", "1e400", "nan", "0x1F",
          "01.10.2026 12:00:00", "31.02.2026 10:00:00", "10/01/2026 15:04", "20261001120000123456", "ja", "J", "nein", "true", "Yes",
          "2026-10-01T12:00:00Z", "2026-10-01 12:00:00.123456+02:00", "2026-10-01", "20261001", "12345678901234567890.1234567890"]


def value_seeds():
    for field in range(22):
        for v in VALUES:
            if int(hashlib.sha1(f"{field}:{v}".encode()).hexdigest(), 16) % 3 == 0 or v in ("42", "", "2026-10-01T12:00:00Z"):
                seed("values", v.encode(), bytes([field]))


def config_seeds():
    seed("config", read(ROOT, "examples", "agent.conf"))
    example = read(ROOT, "agent.conf.example")
    seed("config", example)
    # The example with every commented-out key and table switched on.
    seed("config", re.sub(rb"(?m)^# ?((\[|[a-z_]+ *= ).*)$", rb"\1", example))
    for name in sorted(os.listdir(os.path.join(ROOT, "examples", "mappings"))):
        seed("mapping", read(ROOT, "examples", "mappings", name))
    expected = os.path.join(FIX, "drafts", "expected")
    for name in sorted(os.listdir(expected)):
        seed("mapping", read(expected, name))


KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def known_hosts_seeds():
    lines = [
        f"example.com ssh-ed25519 {KEY}",
        f"[10.0.0.7]:2222,10.0.0.8 ssh-ed25519 {KEY} comment",
        f"|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= ssh-ed25519 {KEY}",
        f"@revoked * ssh-ed25519 {KEY}",
        f"@cert-authority *.example ssh-ed25519 {KEY}",
        "*.client-a.example,!bad.client-a.example ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7",
        "# comment\r",
        "sftp.client-a.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBB",
    ]
    for i in range(len(lines)):
        seed("known_hosts", "\n".join(lines[i:] + lines[:i]).encode(), bytes([i % 5]))


def network_seeds():
    for path, hexsum, digest, auth in [
        ("2026/orders.csv", "a" * 64, "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:", "Bearer slc_0123456789abcdef"),
        ("a%20b/%C3%A9.csv", "", "sha-512=:x:, sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:", "bearer  slc_x "),
        ("../etc/passwd", "zz", "sha-256=::", "Basic abc"),
        ("a//b/./c%00", "A" * 64, "", ""),
    ]:
        seed("upload_api", f"{path}\n{hexsum}\n{digest}\n{auth}".encode())
    for path, query, headers, payload in [
        ("bucket/some key/é+x", "list-type=2&prefix=a b&continuation-token=1/2+3=", "application/xml\t*\tbytes=0-99", "UNSIGNED-PAYLOAD"),
        ("./a/../b//c", "uploads&uploadId=x~y", "  folded   value  ", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ]:
        for normalize in (0, 1):
            seed("sigv4", f"{path}\n{query}\n{headers}\n{payload}".encode(), bytes([normalize]))
    listing = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
<IsTruncated>true</IsTruncated><Contents><Key>a%20b+c.csv</Key><LastModified>2026-10-01T12:00:00.000Z</LastModified><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>42</Size></Contents>
<Contents><Key>x/y.json</Key><Size>0</Size></Contents><NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken><EncodingType>url</EncodingType></ListBucketResult>"""
    seed("s3_xml", listing)
    seed("s3_xml", b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Region>eu-west-1</Region></Error>')
    seed("s3_xml", b'<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE</UploadId></InitiateMultipartUploadResult>')
    seed("s3_xml", b'<ListMultipartUploadsResult><Upload><Key>k</Key><UploadId>u1</UploadId><Initiated>2026-10-01T00:00:00.000Z</Initiated></Upload><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>')


def run(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def archive_seeds():
    work = tempfile.mkdtemp()
    try:
        open(os.path.join(work, "orders.csv"), "wb").write(read(FIX, "clients", "acme", "orders_2026-10-01.csv")[:4096])
        os.makedirs(os.path.join(work, "sub"))
        open(os.path.join(work, "sub", "events.jsonl"), "wb").write(read(FIX, "clients", "initech", "events.jsonl")[:2048])
        run("zip", "-q", "-r", "a.zip", "orders.csv", "sub", cwd=work)
        run("tar", "cf", "a.tar", "orders.csv", "sub", cwd=work)
        run("7z", "a", "-bd", "a.7z", "orders.csv", "sub", cwd=work)
        for kind, name in enumerate(("a.zip", "a.tar", "a.7z")):
            for chunk in (0, 2):
                seed("archive", read(work, name), bytes([kind, chunk]))
        for i, (tool, suffix) in enumerate((("gzip", ".gz"), ("bzip2", ".bz2"), ("xz", ".xz"), ("zstd", ".zst"))):
            shutil.copy(os.path.join(work, "orders.csv"), os.path.join(work, "c.csv"))
            run(tool, "-q", "c.csv", cwd=work) if tool != "zstd" else run("zstd", "-q", "--rm", "c.csv", cwd=work)
            seed("archive", read(work, "c.csv" + suffix), bytes([3 + i, 2]))
            os.remove(os.path.join(work, "c.csv" + suffix))
        run("tar", "czf", "a.tgz", "orders.csv", cwd=work)
        seed("archive", read(work, "a.tgz"), bytes([1, 2]))
    finally:
        shutil.rmtree(work)


def openpgp_seeds():
    home = tempfile.mkdtemp()
    os.chmod(home, 0o700)
    try:
        gpg = ["gpg", "--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]
        run(*gpg, "--import", os.path.join(FUZZ, "keys", "fuzz-secret.asc"), cwd=home)
        plain = os.path.join(home, "orders.csv")
        open(plain, "wb").write(read(FIX, "clients", "acme", "orders_2026-10-01.csv")[:4096])
        recipient = ["--trust-model", "always", "-r", "fuzz@sluice.invalid"]
        for name, args in [
            ("enc", ["--encrypt", *recipient]),
            ("enc.asc", ["--armor", "--encrypt", *recipient]),
            ("encsign", ["--sign", "--encrypt", *recipient]),
            ("nocompress", ["--compress-algo", "none", "--encrypt", *recipient]),
            ("sign", ["--sign"]),
            ("sign.asc", ["--armor", "--sign"]),
            ("sym", ["--symmetric", "--passphrase", "x"]),
        ]:
            out = os.path.join(home, name + ".pgp")
            run(*gpg, *args, "-o", out, plain, cwd=home)
            seed("openpgp", read(out))
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    csv_seeds()
    json_seeds()
    xlsx_seeds()
    fixed_seeds()
    value_seeds()
    config_seeds()
    known_hosts_seeds()
    network_seeds()
    archive_seeds()
    openpgp_seeds()
    for h in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, h))
        print(f"{h}: {len(files)} seeds, {sum(os.path.getsize(os.path.join(CORPUS, h, f)) for f in files)} bytes")
