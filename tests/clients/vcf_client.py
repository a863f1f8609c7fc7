#!/usr/bin/env python3
"""Drives rotor with Broadcom's own VCF Python bindings (vmware-sddc-manager), unchanged:
log in, refresh the access token, list credentials (VCF paging, from 0), rotate one, poll
the task to its end, read a refused request's error, log out. Prints one JSON object per
step on stdout for the Rust test to check; exits 1 if a step raises unexpectedly.

Environment: ROTOR_URL, ROTOR_USER, ROTOR_PASSWORD (the password of an API user; never
an argument), RESOURCE_NAME, RESOURCE_TYPE, ACCOUNT.
"""
import json
import os
import sys
import time

import requests
from vmware.sddc_manager.model_client import (BaseCredential, CredentialsExpirationSpec, CredentialsUpdateSpec, Error,
                                              ResourceCredentials, TokenCreationSpec)
from vmware.sddc_manager.v1.credentials_client import Expirations, Tasks
from vmware.sddc_manager.v1.tokens.access_token_client import Refresh
from vmware.sddc_manager.v1.tokens_client import RefreshToken
from vmware.sddc_manager.v1_client import Credentials, Tokens
from vmware.vapi.bindings.error import UnresolvedError
from vmware.vapi.lib.connect import get_requests_connector
from vmware.vapi.security.oauth import create_oauth_security_context
from vmware.vapi.stdlib.client.factories import StubConfigurationFactory


def say(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def status_of(e):
    """(HTTP status, errorCode) of a refused call, whichever class the bindings raise."""
    if isinstance(e, Error):
        return e.get_status_code(), e.error_code
    if isinstance(e, UnresolvedError):
        value = e.get_error_value()
        try:
            code = value.get_field("errorCode").value
        except Exception:
            code = None
        return None, code
    raise e


def stub_config(token=None):
    connector = get_requests_connector(session=requests.Session(), msg_protocol="rest",
                                       url=os.environ["ROTOR_URL"])
    if token is not None:
        connector.set_security_context(create_oauth_security_context(token))
    return StubConfigurationFactory.new_std_configuration(connector)


def main():
    anonymous = stub_config()
    pair = Tokens(anonymous).create_token(TokenCreationSpec(
        username=os.environ["ROTOR_USER"], password=os.environ["ROTOR_PASSWORD"]))
    say("login", access_token=bool(pair.access_token), refresh_token=bool(pair.refresh_token.id))

    access = Refresh(anonymous).refresh_access_token(pair.refresh_token.id)
    say("refresh", access_token=bool(access), changed=access != pair.access_token)

    config = stub_config(access)
    credentials = Credentials(config)
    page = credentials.get_credentials(resource_name=os.environ["RESOURCE_NAME"], page_number="0", page_size="10")
    say("list", page_number=page.page_metadata.page_number, total=page.page_metadata.total_elements,
        usernames=[c.username for c in page.elements],
        resource_names=[c.resource.resource_name for c in page.elements])

    by_ip = credentials.get_credentials(resource_ip="127.0.0.1", page_number="0")
    first = by_ip.elements[0]
    say("list_by_ip", total=by_ip.page_metadata.total_elements, resource_ip=first.resource.resource_ip,
        created=first.creation_timestamp, modified=first.modification_timestamp)
    try:
        credentials.get_credentials(domain_name="mgmt-domain", page_number="0")
        say("domain", raised=False)
    except (Error, UnresolvedError) as e:
        status, code = status_of(e)
        say("domain", raised=True, status=status, error_code=code,
            message=e.message if isinstance(e, Error) else None)

    spec = CredentialsUpdateSpec(operation_type="ROTATE", elements=[ResourceCredentials(
        resource_name=os.environ["RESOURCE_NAME"], resource_type=os.environ["RESOURCE_TYPE"],
        credentials=[BaseCredential(username=os.environ["ACCOUNT"], credential_type="SSH")])])
    task = credentials.update_or_rotate_passwords(spec)
    say("rotate", id=task.id, status=task.status)

    tasks = Tasks(config)
    deadline = time.time() + 120
    polled = tasks.get_credentials_task(task.id)
    while polled.status in ("PENDING", "IN_PROGRESS") and time.time() < deadline:
        time.sleep(0.5)
        polled = tasks.get_credentials_task(task.id)
    sub = polled.sub_tasks[0]
    say("poll", status=polled.status, is_auto_rotate=polled.is_auto_rotate,
        created=polled.creation_timestamp, completed=polled.completion_timestamp,
        subtask={"username": sub.username, "resourceName": sub.resource_name,
                 "credentialType": sub.credential_type, "entityType": sub.entity_type,
                 "status": sub.status, "creationTimestamp": sub.creation_timestamp,
                 "completionTimestamp": sub.completion_timestamp})

    expirations = Expirations(config)
    started = expirations.get_password_expiration(CredentialsExpirationSpec(credential_ids=[first.id]))
    check = expirations.get_password_expiration_by_task_id(started.id)
    deadline = time.time() + 60
    while check.status == "IN_PROGRESS" and time.time() < deadline:
        time.sleep(0.5)
        check = expirations.get_password_expiration_by_task_id(started.id)
    e = check.elements[0]
    say("expirations", started=started.status, status=check.status, same_id=e.id == first.id,
        username=e.username, resource_id=e.resource.resource_id,
        connectivity=e.expiry.connectivity_status, expiry_status=e.expiry.status,
        expiry_date=e.expiry.expiry_date, last_checked=e.expiry.last_checked_date)

    newest = tasks.get_credentials_tasks(limit=1)
    say("tasks", count=len(newest.elements), first=newest.elements[0].id,
        page_size=newest.page_metadata.page_size)

    bad = CredentialsUpdateSpec(operation_type="ROTATE", elements=[ResourceCredentials(
        resource_name=os.environ["RESOURCE_NAME"], resource_type=os.environ["RESOURCE_TYPE"],
        credentials=[BaseCredential(username="no-such-account-here")])])
    try:
        credentials.update_or_rotate_passwords(bad)
        say("error", raised=False)
    except (Error, UnresolvedError) as e:
        status, code = status_of(e)
        message = e.message if isinstance(e, Error) else None
        say("error", raised=True, status=status, error_code=code, message=message)

    try:
        Tokens(anonymous).create_token(TokenCreationSpec(username=os.environ["ROTOR_USER"], password="not the password"))
        say("wrong_password", raised=False)
    except (Error, UnresolvedError) as e:
        say("wrong_password", raised=True, error_code=status_of(e)[1])

    RefreshToken(anonymous).invalidate_refresh_token(pair.refresh_token.id)
    try:
        Refresh(anonymous).refresh_access_token(pair.refresh_token.id)
        say("after_logout", refused=False)
    except (Error, UnresolvedError) as e:
        say("after_logout", refused=True, error_code=status_of(e)[1])


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line the test shows, no traceback noise
        print(f"vcf_client.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
