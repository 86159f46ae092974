// Single-flight, the module that makes one upstream download serve every client asking for the
// same blob or manifest at once: concurrent callers of a key share one execution and its outcome
// (value or error), other keys run on their own, and a key is free again once its execution has
// settled, also when an execution started another of the same key from inside itself.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SingleFlight } from '../../src/shared/index.js';

/** A promise settled from outside. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: Error) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

test('concurrent callers of one key share one execution: the first starts it, the others join and get its value', async () => {
  const flight = new SingleFlight<string>();
  const gate = deferred<string>();
  let calls = 0;
  const fn = () => {
    calls++;
    return gate.promise;
  };
  const first = flight.run('k', fn);
  const second = flight.run('k', fn);
  const third = flight.run('k', fn);
  assert.deepEqual([first.joined, second.joined, third.joined], [false, true, true]);
  assert.equal(second.promise, first.promise);
  assert.equal(third.promise, first.promise);
  assert.equal(flight.has('k'), true);
  gate.resolve('v');
  assert.deepEqual(await Promise.all([first.promise, second.promise, third.promise]), ['v', 'v', 'v']);
  assert.equal(calls, 1);
});

test('other keys run their own execution', async () => {
  const flight = new SingleFlight<string>();
  const a = flight.run('a', async () => 'A');
  const b = flight.run('b', async () => 'B');
  assert.deepEqual([a.joined, b.joined], [false, false]);
  assert.deepEqual(await Promise.all([a.promise, b.promise]), ['A', 'B']);
});

test('once the execution settled the key is free: the next caller starts a new one', async () => {
  const flight = new SingleFlight<number>();
  let calls = 0;
  const fn = async () => ++calls;
  assert.equal(await flight.run('k', fn).promise, 1);
  assert.equal(flight.has('k'), false);
  assert.equal(flight.has('other'), false);
  const again = flight.run('k', fn);
  assert.equal(again.joined, false);
  assert.equal(await again.promise, 2);
});

test('a failed execution fails every caller that joined it, and frees the key', async () => {
  const flight = new SingleFlight<string>();
  const gate = deferred<string>();
  const first = flight.run('k', () => gate.promise);
  const second = flight.run('k', () => Promise.resolve('not run'));
  assert.equal(second.joined, true);
  gate.reject(new Error('upstream broke'));
  await assert.rejects(first.promise, /upstream broke/);
  await assert.rejects(second.promise, /upstream broke/);
  assert.equal(flight.has('k'), false);
  assert.equal(await flight.run('k', async () => 'fresh').promise, 'fresh');
});

test('an execution that starts another of its own key from inside: the inner one settling does not free the key of the outer one still running', async () => {
  const flight = new SingleFlight<string>();
  const outerGate = deferred<string>();
  let inner: Promise<string> | undefined;
  const outer = flight.run('k', () => {
    // Synchronously, before the outer execution is registered: the key is still free here.
    inner = flight.run('k', async () => 'inner').promise;
    return outerGate.promise;
  });
  assert.equal(await inner, 'inner');
  assert.equal(flight.has('k'), true, 'the outer execution is still in flight');
  const late = flight.run('k', async () => 'another');
  assert.equal(late.joined, true, 'a caller now joins the outer execution');
  outerGate.resolve('outer');
  assert.equal(await outer.promise, 'outer');
  assert.equal(await late.promise, 'outer');
  assert.equal(flight.has('k'), false);
});
