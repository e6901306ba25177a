# Schemathesis hooks and the error body check of scripts/schemathesis, which loads them through SCHEMATHESIS_HOOKS.
import json
import os

import schemathesis
from hypothesis import strategies as st

# What the script seeded, by path parameter name: {"unit": ["prefill-0", ...], "worker": [...], ...}.
SEEDED = json.loads(os.environ.get("FULCRUM_SEEDED", "{}"))


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    """Half the time, a path parameter the script seeded names an existing object, so the fuzzer gets past 404s."""
    if not path_parameters:
        return st.just(path_parameters)
    return st.fixed_dictionaries(
        {
            name: st.one_of(st.just(value), st.sampled_from(SEEDED[name])) if SEEDED.get(name) else st.just(value)
            for name, value in path_parameters.items()
        }
    )


@schemathesis.hook
def before_call(context, case, kwargs):
    """A placement poll whose If-None-Match names the current version or a later one parks for `wait` seconds (up to
    120) by design: at most 2 s here, so that one fuzzed poll cannot stall the run."""
    wait = (case.query or {}).get("wait")
    if case.path == "/v1/workers/{worker}/placement" and isinstance(wait, int) and 2 < wait <= 120:
        case.query["wait"] = 2


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Drops one failure: an assignment batch's 503 no_eligible_workers. The fuzzer cordons and drains every worker it
    finds (GET /v1/units and /v1/workers name them all), and then 503 is the documented answer."""
    return not (case.path.endswith("/assignments") and response.status_code == 503
                and error_of(response).get("code") == "no_eligible_workers")


def error_of(response):
    try:
        body = response.json()
    except ValueError:
        return {}
    return body.get("error", {}) if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}


@schemathesis.check
def error_body(ctx, response, case):
    """Every 4xx and 5xx answer, documented or not, is JSON and exactly {"error": {"code", "message", "field"?}},
    all strings (README, API, Errors)."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if (
        content_type != "application/json"
        or not isinstance(error, dict)
        or set(body) != {"error"}
        or not {"code", "message"} <= set(error) <= {"code", "message", "field"}
        or not all(isinstance(value, str) for value in error.values())
    ):
        raise AssertionError(
            f"Not Fulcrum's JSON error: {response.status_code}, Content-Type {content_type or 'none'}, "
            f"body {response.text[:300]!r}"
        )
    return None
