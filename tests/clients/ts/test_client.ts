// The TypeScript client generated from openapi/openapi.json (openapi-typescript types +
// openapi-fetch), used unchanged against a live Berth: scripts/clients.sh generates
// generated/berth.ts, type-checks this file with `tsc --noEmit`, compiles it and runs it
// with node's test runner, with BERTH_URL, BERTH_TOKEN (an operator's) and
// BERTH_PULL_IMAGE (an image it pushed to the loopback registry under a unique name).
import assert from "node:assert/strict";
import { test } from "node:test";

import createClient from "openapi-fetch";

import type { components, paths } from "./generated/berth.js";

type Job = components["schemas"]["Job"];
type Problem = components["schemas"]["Problem"];
type JobStreamEvent = components["schemas"]["JobStreamEvent"];
type StateEvent = components["schemas"]["StateEvent"];

function env(name: string): string {
  const value = process.env[name];
  assert.ok(value, `${name} is set`);
  return value;
}

const baseUrl = env("BERTH_URL");
const token = env("BERTH_TOKEN");
const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });

interface SseEvent {
  event: string;
  id: string | undefined;
  data: JobStreamEvent;
}

/** The events of a server-sent event stream, until the server closes it. */
async function sseEvents(path: string): Promise<SseEvent[]> {
  const res = await fetch(baseUrl + path, { headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" } });
  assert.equal(res.status, 200);
  assert.ok(res.headers.get("content-type")?.startsWith("text/event-stream"));
  assert.ok(res.body, "a streamed body");
  const events: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = "";
  let current: { event: string; id: string | undefined; data: string[] } = { event: "message", id: undefined, data: [] };
  for await (const chunk of res.body) {
    buffer += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
      if (line === "") {
        if (current.data.length > 0) {
          events.push({ event: current.event, id: current.id, data: JSON.parse(current.data.join("\n")) as JobStreamEvent });
        }
        current = { event: "message", id: undefined, data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") current.event = value;
      else if (field === "id") current.id = value;
      else if (field === "data") current.data.push(value);
    }
  }
  return events;
}

test("lists images as the typed ImageSummary", async () => {
  const { data, error, response } = await client.GET("/v1/images");
  assert.equal(response.status, 200);
  assert.equal(error, undefined);
  assert.ok(data && data.length > 0, "the engine has images (the base image at least)");
  assert.ok(data.some((i) => i.repo_tags.includes("berth-test/busybox:latest")), JSON.stringify(data.map((i) => i.repo_tags)));
  for (const image of data) assert.ok(!Number.isNaN(Date.parse(image.created)), `created is a date-time: ${image.created}`);
});

test("pulls an image and follows the job to end", async () => {
  const { data: job, response } = await client.POST("/v1/images/pull", { body: { image: env("BERTH_PULL_IMAGE") } });
  assert.equal(response.status, 202);
  assert.ok(job);
  assert.equal(job.kind, "pull");
  assert.equal(response.headers.get("location"), `/v1/jobs/${job.id}`);

  const events = await sseEvents(`/v1/jobs/${encodeURIComponent(job.id)}/events`);
  const last = events.at(-1);
  assert.equal(last?.event, "end", JSON.stringify(events.map((e) => e.event)));
  assert.equal((last.data as StateEvent).state, "succeeded");
  const ids = events.map((e) => Number(e.id));
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
  const result = events.find((e) => e.event === "result")?.data as { image_id?: string } | undefined;
  assert.ok(result?.image_id?.startsWith("sha256:"), JSON.stringify(result));

  const { data: done } = await client.GET("/v1/jobs/{id}", { params: { path: { id: job.id } } });
  const state: Job["state"] | undefined = done?.state;
  assert.equal(state, "succeeded");
  assert.ok(done?.finished_at && Date.parse(done.finished_at) >= Date.parse(done.created_at));
});

test("reads a problem body as the typed Problem", async () => {
  const { data, error, response } = await client.GET("/v1/jobs/{id}", { params: { path: { id: "01JZZZZZZZZZZZZZZZZZZZZZZZ" } } });
  assert.equal(response.status, 404);
  assert.equal(data, undefined);
  const problem: Problem | undefined = error;
  assert.ok(problem);
  assert.equal(problem.code, "job_not_found");
  assert.equal(problem.status, 404);
  assert.equal(problem.type, "/problems/job_not_found");
  assert.equal(problem.request_id, response.headers.get("x-request-id"));
  const page = await fetch(new URL(problem.type, baseUrl));
  assert.equal(page.status, 200);
  assert.match(await page.text(), /Job not found/);
});
