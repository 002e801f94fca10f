"""Prepares a fresh moto server for filedrop: an IAM user allowed s3:*, its access key, the
buckets asked for, and then authentication switched on (moto starts with it off).

Prints the credentials as JSON (default) or as shell assignments (--format env).
"""

import argparse
import json
import urllib.request

import boto3

ADMIN = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
S3_WRITER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", action="append", default=[])
    parser.add_argument("--format", choices=["json", "env"], default="json")
    args = parser.parse_args()

    common = {"endpoint_url": args.endpoint, "region_name": "us-east-1", **ADMIN}
    iam = boto3.client("iam", **common)
    iam.create_user(UserName="filedrop")
    iam.put_user_policy(
        UserName="filedrop",
        PolicyName="s3-writer",
        PolicyDocument=json.dumps(S3_WRITER_POLICY),
    )
    key = iam.create_access_key(UserName="filedrop")["AccessKey"]
    s3 = boto3.client("s3", **common)
    for bucket in args.bucket:
        s3.create_bucket(Bucket=bucket)

    request = urllib.request.Request(
        f"{args.endpoint}/moto-api/reset-auth",
        data=b"0",
        headers={"Content-Type": "text/plain"},
        method="POST",
    )
    urllib.request.urlopen(request).read()

    credentials = {
        "endpoint": args.endpoint,
        "access_key_id": key["AccessKeyId"],
        "secret_access_key": key["SecretAccessKey"],
    }
    if args.format == "json":
        print(json.dumps(credentials))
    else:
        print(f"MOTO_ENDPOINT={credentials['endpoint']}")
        print(f"MOTO_ACCESS_KEY_ID={credentials['access_key_id']}")
        print(f"MOTO_SECRET_ACCESS_KEY={credentials['secret_access_key']}")


if __name__ == "__main__":
    main()
