"""Prepares a fresh moto server for filedrop: an IAM user `filedrop` allowed s3:* and
sts:AssumeRole (filedrop's own identity, and the key of access-key destinations), a user
`bucket-owner` allowed iam:* and s3:* (what a bucket owner does: create roles for filedrop), their
access keys, the buckets asked for, and then authentication switched on (moto starts with it
off).

Prints the credentials as JSON (default) or as shell assignments (--format env).
"""

import argparse
import json
import urllib.request

import boto3

ADMIN = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
FILEDROP_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sts:AssumeRole"], "Resource": "*"}],
}
OWNER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["iam:*", "s3:*"], "Resource": "*"}],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", action="append", default=[])
    parser.add_argument("--format", choices=["json", "env"], default="json")
    args = parser.parse_args()

    common = {"endpoint_url": args.endpoint, "region_name": "us-east-1", **ADMIN}
    iam = boto3.client("iam", **common)
    keys = {}
    for user, policy in [("filedrop", FILEDROP_POLICY), ("bucket-owner", OWNER_POLICY)]:
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="policy", PolicyDocument=json.dumps(policy))
        keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
    key = keys["filedrop"]
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
        "owner_access_key_id": keys["bucket-owner"]["AccessKeyId"],
        "owner_secret_access_key": keys["bucket-owner"]["SecretAccessKey"],
    }
    if args.format == "json":
        print(json.dumps(credentials))
    else:
        print(f"MOTO_ENDPOINT={credentials['endpoint']}")
        print(f"MOTO_ACCESS_KEY_ID={credentials['access_key_id']}")
        print(f"MOTO_SECRET_ACCESS_KEY={credentials['secret_access_key']}")


if __name__ == "__main__":
    main()
