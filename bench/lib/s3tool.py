#!/usr/bin/env python3
"""boto3 side of bench/s3.sh (run with MOTO_PYTHON, which has boto3).

usage: s3tool.py ENDPOINT_URL AK SK BUCKET list PREFIX
       s3tool.py ENDPOINT_URL AK SK BUCKET upload FILE KEY
       s3tool.py ENDPOINT_URL AK SK BUCKET count PREFIX
       s3tool.py ENDPOINT_URL AK SK BUCKET mpu FILE KEY
       s3tool.py ENDPOINT_URL AK SK BUCKET download KEY FILE
       s3tool.py ENDPOINT_URL AK SK BUCKET mkbucket
       s3tool.py ENDPOINT_URL AK SK BUCKET delete PREFIX

`list` is a bare paginated ListObjectsV2 of PREFIX that only counts keys; `upload` is
upload_file with 8 MiB parts, $S3_CONCURRENCY (default 4, etcdsnap's default) in flight;
`download` is download_file, 8 MiB parts, 2 in flight. Each prints one JSON line
with "inproc_seconds": the time from before creating the client to the end of the operation
(Python start-up and `import boto3` excluded; the caller times the whole process).
`mpu` is the same multipart upload done by hand, timing its phases separately
(parts_seconds: all UploadPart requests; complete_seconds: CompleteMultipartUpload alone), to
show how much of an upload is the server's completion step. `mkbucket` creates BUCKET (for
moto, which keeps buckets in memory), `delete` removes every object under PREFIX. An https
ENDPOINT_URL is verified against $AWS_CA_BUNDLE (botocore reads it).
"""

import json
import os
import sys
import time

t_start = time.monotonic()
import boto3  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402

t_imported = time.monotonic()
CONCURRENCY = int(os.environ.get("S3_CONCURRENCY") or 4)


def client(ep, ak, sk):
    return boto3.client(
        "s3", endpoint_url=ep, aws_access_key_id=ak, aws_secret_access_key=sk,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def main():
    ep, ak, sk, bucket, op = sys.argv[1:6]
    args = sys.argv[6:]
    t0 = time.monotonic()
    c = client(ep, ak, sk)
    out = {}
    if op in ("list", "count"):
        n = pages = 0
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=args[0]):
            pages += 1
            n += page.get("KeyCount", len(page.get("Contents", [])))
        out.update(keys=n, pages=pages)
    elif op == "upload":
        cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20,
                             max_concurrency=CONCURRENCY)
        c.upload_file(args[0], bucket, args[1], Config=cfg)
        out.update(key=args[1])
    elif op == "download":
        cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20,
                             max_concurrency=2)  # as restore.sh has always measured
        c.download_file(bucket, args[0], args[1], Config=cfg)
        out.update(key=args[0])
    elif op == "mpu":
        from concurrent.futures import ThreadPoolExecutor
        path, key, part = args[0], args[1], 8 << 20
        uid = c.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

        def put(n):
            with open(path, "rb") as f:
                f.seek((n - 1) * part)
                body = f.read(part)
            r = c.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=n, Body=body)
            return {"PartNumber": n, "ETag": r["ETag"]}

        nparts = max(1, -(-os.path.getsize(path) // part))
        t_parts = time.monotonic()
        with ThreadPoolExecutor(CONCURRENCY) as ex:
            parts = list(ex.map(put, range(1, nparts + 1)))
        t_complete = time.monotonic()
        c.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid,
                                    MultipartUpload={"Parts": parts})
        out.update(parts=nparts, parts_seconds=t_complete - t_parts,
                   complete_seconds=time.monotonic() - t_complete)
    elif op == "mkbucket":
        c.create_bucket(Bucket=bucket)
    elif op == "delete":
        n = 0
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=args[0]):
            objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objs:
                c.delete_objects(Bucket=bucket, Delete={"Objects": objs})
                n += len(objs)
        out.update(deleted=n)
    else:
        sys.exit(f"unknown op {op}")
    t1 = time.monotonic()
    out.update(inproc_seconds=t1 - t0, import_seconds=t_imported - t_start)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
