"""The Python client generated from openapi/openapi.json (openapi-python-client), used
unchanged against a live Berth: scripts/clients.sh generates it as the `berth_client`
package, starts Berth, and sets BERTH_URL, BERTH_TOKEN (an operator's) and BERTH_PULL_IMAGE
(an image it pushed to the loopback registry under a name nobody else uses)."""

import json
import os

import httpx

from berth_client import AuthenticatedClient
from berth_client.api.images import list_images, pull_image
from berth_client.api.jobs import get_job
from berth_client.models import ImageSummary, Job, JobState, Problem, PullRequest
from berth_client.models.error_code import ErrorCode

URL = os.environ["BERTH_URL"]
TOKEN = os.environ["BERTH_TOKEN"]
IMAGE = os.environ["BERTH_PULL_IMAGE"]


def client() -> AuthenticatedClient:
    return AuthenticatedClient(base_url=URL, token=TOKEN, raise_on_unexpected_status=True)


def sse_events(path: str):
    """(event, id, data) of a server-sent event stream, until the server closes it."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
    with httpx.stream("GET", URL + path, headers=headers, timeout=httpx.Timeout(10, read=120)) as res:
        assert res.status_code == 200, res.read()
        assert res.headers["content-type"].startswith("text/event-stream")
        event, ident, data = None, None, []
        for line in res.iter_lines():
            if line == "":
                if data:
                    yield event, ident, json.loads("\n".join(data))
                event, ident, data = None, None, []
            elif line.startswith(":") or line.startswith("retry:"):
                continue
            else:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    event = value
                elif field == "id":
                    ident = value
                elif field == "data":
                    data.append(value)


def test_lists_images_as_typed_models():
    with client() as c:
        res = list_images.sync_detailed(client=c)
    assert res.status_code == 200, res.content
    images = res.parsed
    assert isinstance(images, list) and images, "the engine has images (the base image at least)"
    assert all(isinstance(i, ImageSummary) for i in images)
    assert any("berth-test/busybox:latest" in i.repo_tags for i in images), [i.repo_tags for i in images]
    # `created` is a date-time in the spec: the client parses it.
    assert all(i.created.year >= 2000 for i in images)


def test_pulls_an_image_and_follows_the_job_to_end():
    with client() as c:
        res = pull_image.sync_detailed(client=c, body=PullRequest(image=IMAGE))
        assert res.status_code == 202, res.content
        job = res.parsed
        assert isinstance(job, Job) and job.kind.value == "pull", job
        assert res.headers["location"] == f"/v1/jobs/{job.id}"

        events = list(sse_events(f"/v1/jobs/{job.id}/events"))
        names = [e for e, _, _ in events]
        assert names[-1] == "end", names
        assert events[-1][2]["state"] == "succeeded", events
        ids = [int(i) for _, i, _ in events]
        assert ids == sorted(ids) and ids[0] >= 1, ids
        result = next(d for e, _, d in events if e == "result")
        assert result["image_id"].startswith("sha256:"), result

        done = get_job.sync(client=c, id=job.id)
    assert isinstance(done, Job) and done.state == JobState.SUCCEEDED, done
    assert done.finished_at is not None and done.finished_at >= done.created_at


def test_reads_a_problem_body_as_the_typed_model():
    with client() as c:
        res = get_job.sync_detailed(client=c, id="01JZZZZZZZZZZZZZZZZZZZZZZZ")
    assert res.status_code == 404, res.content
    problem = res.parsed
    assert isinstance(problem, Problem), problem
    assert problem.code == ErrorCode.JOB_NOT_FOUND
    assert problem.status == 404 and problem.type_ == "/problems/job_not_found", problem
    assert problem.request_id == res.headers["x-request-id"]
    # The type names a page Berth serves.
    page = httpx.get(URL + problem.type_)
    assert page.status_code == 200 and "Job not found" in page.text
