import assert from "node:assert/strict";
import { Semaphore } from "./semaphore.ts";

Deno.test("Semaphore hands a released permit to the longest waiter, not to a newcomer", async () => {
  const slots = new Semaphore(1);
  await slots.acquire();
  const order: string[] = [];
  const first = slots.acquire().then(() => order.push("first"));
  slots.release();
  // A newcomer right after the release waits behind the woken waiter.
  const late = slots.acquire().then(() => order.push("late"));
  await first;
  assert.equal(slots.held, 1);
  assert.equal(slots.waiting, 1);
  slots.release();
  await late;
  slots.release();
  assert.deepEqual(order, ["first", "late"]);
  assert.equal(slots.held, 0);
});

Deno.test("Semaphore.acquire() rejects with the signal's reason and leaves the queue", async () => {
  const slots = new Semaphore(1);
  await slots.acquire();
  const stop = new AbortController();
  const waiting = slots.acquire(stop.signal);
  assert.equal(slots.waiting, 1);
  stop.abort(new Error("stopped"));
  await assert.rejects(waiting, /stopped/);
  assert.equal(slots.waiting, 0);
  await assert.rejects(slots.acquire(stop.signal), /stopped/);
  slots.release();
  assert.equal(slots.held, 0);
  await assert.rejects(slots.use(() => Promise.reject(new Error("task failed"))), /task failed/);
  assert.equal(slots.held, 0);
});
