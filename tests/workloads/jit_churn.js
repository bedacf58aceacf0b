// A JIT service that never stops compiling: a new function every 100 ms
// (gen_0, gen_1, ...), each kept hot until the next one, so node
// --perf-basic-prof appends to /tmp/perf-PID.map all the time. Usage:
// node --perf-basic-prof jit_churn.js SECONDS
console.log("pid=" + process.pid);
const secs = Number(process.argv[2] || 20);
const end = Date.now() + secs * 1000;
let i = 0;
while (Date.now() < end) {
  // A distinct function per step: its own name and its own code.
  const fn = new Function(
    `return function gen_${i}(x) { let s = ${i}; for (let k = 0; k < x; k++) s = (s * 31 + k + ${i}) % 1000003; return s; }`
  )();
  const until = Math.min(end, Date.now() + 100);
  let sink = 0;
  while (Date.now() < until) sink += fn(20000);
  if (sink === -1) console.log(sink);
  i += 1;
}
console.log("made=" + i);
