#!/usr/bin/env python3
"""Test helper: drives a loopback S3 server (moto) over HTTP with boto3, as a client would.

Usage: s3.py ENDPOINT < ops.json   (a JSON list of operations; prints a JSON list of results)
Operations:
  {"op": "bucket", "name": B}                                  create a bucket
  {"op": "put", "bucket": B, "key": K, "text": T}              put a small object
  {"op": "put", "bucket": B, "key": K, "size": N, "seed": S}   put N pseudo-random bytes; result: sha256
  {"op": "put_many", "bucket": B, "prefix": P, "count": N}     put N small objects P00000.csv ... in parallel
  {"op": "delete", "bucket": B, "key": K}
  {"op": "keys", "bucket": B}                                  result: every key in the bucket
  {"op": "etag", "bucket": B, "key": K}                        result: the object's ETag
  {"op": "get", "bucket": B, "key": K}                         result: the object's bytes as text
  {"op": "checksum", "bucket": B, "key": K}                    result: its x-amz-checksum-sha256 (None without)
  {"op": "uploads", "bucket": B}                               result: the keys of its unfinished multipart uploads
  {"op": "iam_user"}                                           create a user with full access, then turn on
                                                               moto's credential checks; result: [key id, secret]
"""
import concurrent.futures, hashlib, json, random, sys, urllib.request

import boto3
from botocore.config import Config

endpoint = sys.argv[1]
creds = dict(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
s3 = boto3.client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}, max_pool_connections=16), **creds)


def blob(size, seed):
    rnd = random.Random(seed)
    h = hashlib.sha256()
    chunks = []
    left = size
    while left:
        n = min(left, 1 << 20)
        b = rnd.randbytes(n)
        h.update(b)
        chunks.append(b)
        left -= n
    return b"".join(chunks), h.hexdigest()


def run(op):
    kind = op["op"]
    if kind == "bucket":
        s3.create_bucket(Bucket=op["name"])
    elif kind == "put":
        if "text" in op:
            body = op["text"].encode()
            s3.put_object(Bucket=op["bucket"], Key=op["key"], Body=body)
            return hashlib.sha256(body).hexdigest()
        body, digest = blob(op["size"], op.get("seed", 1))
        s3.put_object(Bucket=op["bucket"], Key=op["key"], Body=body)
        return digest
    elif kind == "put_many":
        def one(i):
            s3.put_object(Bucket=op["bucket"], Key="%s%05d.csv" % (op["prefix"], i), Body=("id\n%d\n" % i).encode())
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(op["count"])))
    elif kind == "delete":
        s3.delete_object(Bucket=op["bucket"], Key=op["key"])
    elif kind == "keys":
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=op["bucket"]):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return sorted(keys)
    elif kind == "etag":
        return s3.head_object(Bucket=op["bucket"], Key=op["key"])["ETag"]
    elif kind == "get":
        return s3.get_object(Bucket=op["bucket"], Key=op["key"])["Body"].read().decode()
    elif kind == "checksum":
        return s3.head_object(Bucket=op["bucket"], Key=op["key"], ChecksumMode="ENABLED").get("ChecksumSHA256")
    elif kind == "uploads":
        return sorted(u["Key"] for u in s3.list_multipart_uploads(Bucket=op["bucket"]).get("Uploads", []))
    elif kind == "iam_user":
        iam = boto3.client("iam", endpoint_url=endpoint, **creds)
        iam.create_user(UserName="tester")
        iam.put_user_policy(UserName="tester", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="tester")["AccessKey"]
        urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"})).read()
        return [key["AccessKeyId"], key["SecretAccessKey"]]
    else:
        raise SystemExit("unknown op %r" % kind)
    return None


print(json.dumps([run(op) for op in json.load(sys.stdin)]))
