"""What a bucket owner does in a moto server, for the delivery tests (run by the Rust tests,
not by pytest).

  moto_iam.py create-role --endpoint E --name N --trust-policy JSON
      creates role N with the trust policy and a policy allowing s3:*; prints its ARN.
  moto_iam.py create-user --endpoint E --name N --policy JSON
      creates user N with the policy and an access key; prints the key as JSON.
  moto_iam.py put-user-policy --endpoint E --name N --policy JSON
      replaces the policy of user N (as a bucket owner mends a credential's permissions).
  moto_iam.py assume-role-calls --recording FILE
      prints, as a JSON list, the parameters of every STS AssumeRole call in a moto recording
      (MOTO_ENABLE_RECORDING=True, MOTO_RECORDER_FILEPATH=FILE).

The bucket owner's key comes from MOTO_OWNER_ACCESS_KEY_ID and MOTO_OWNER_SECRET_ACCESS_KEY.
"""

import argparse
import base64
import json
import os
import urllib.parse

import boto3

S3_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}],
}


def owners_iam(endpoint: str):
    return boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=os.environ["MOTO_OWNER_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["MOTO_OWNER_SECRET_ACCESS_KEY"],
    )


def create_user(args) -> None:
    iam = owners_iam(args.endpoint)
    iam.create_user(UserName=args.name)
    iam.put_user_policy(UserName=args.name, PolicyName="policy", PolicyDocument=args.policy)
    key = iam.create_access_key(UserName=args.name)["AccessKey"]
    print(json.dumps({"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}))


def put_user_policy(args) -> None:
    iam = owners_iam(args.endpoint)
    iam.put_user_policy(UserName=args.name, PolicyName="policy", PolicyDocument=args.policy)


def create_role(args) -> None:
    iam = owners_iam(args.endpoint)
    role = iam.create_role(RoleName=args.name, AssumeRolePolicyDocument=args.trust_policy)
    iam.put_role_policy(
        RoleName=args.name, PolicyName="s3-writer", PolicyDocument=json.dumps(S3_POLICY)
    )
    print(role["Role"]["Arn"])


def recorded_requests(text: str):
    """Every request entry of a moto recording. moto's threads append to the file at once, so a
    large entry may be split around a small one: each entry is decoded where it starts,
    whatever surrounds it, and the pieces of split ones are skipped."""
    decoder = json.JSONDecoder()
    start = text.find('{"headers"')
    while start != -1:
        try:
            entry, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            entry = None
        if isinstance(entry, dict):
            yield entry
        start = text.find('{"headers"', start + 1)


def assume_role_calls(args) -> None:
    calls = []
    with open(args.recording) as recording:
        text = recording.read()
    for entry in recorded_requests(text):
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        form = dict(urllib.parse.parse_qsl(body))
        if form.get("Action") == "AssumeRole":
            calls.append(form)
    print(json.dumps(calls))


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-role")
    create.add_argument("--endpoint", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--trust-policy", required=True)
    create.set_defaults(run=create_role)
    user = commands.add_parser("create-user")
    user.add_argument("--endpoint", required=True)
    user.add_argument("--name", required=True)
    user.add_argument("--policy", required=True)
    user.set_defaults(run=create_user)
    policy = commands.add_parser("put-user-policy")
    policy.add_argument("--endpoint", required=True)
    policy.add_argument("--name", required=True)
    policy.add_argument("--policy", required=True)
    policy.set_defaults(run=put_user_policy)
    calls = commands.add_parser("assume-role-calls")
    calls.add_argument("--recording", required=True)
    calls.set_defaults(run=assume_role_calls)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
