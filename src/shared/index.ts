// Small primitives that every layer may import (no I/O, no other src/ folder): single-flight,
// the circuit breaker, size and duration parsing.
export { SingleFlight } from './single-flight.js';
export { CircuitBreaker, type BreakerState } from './circuit-breaker.js';
export { parseSize, parseDuration } from './units.js';
