// Compiles spin_late_fib only 1.5 s after it starts, so a profiler that
// read the perf map (node --perf-basic-prof) once would not name it.
console.log("pid=" + process.pid);
const end = Date.now() + 4000;
setTimeout(() => {
  // Defined and compiled only now, after profiling started.
  const late_defined_fib = new Function("n", "return n < 2 ? n : arguments.callee(n - 1) + arguments.callee(n - 2);");
  function spin_late_fib(n) { return n < 2 ? n : spin_late_fib(n - 1) + spin_late_fib(n - 2); }
  while (Date.now() < end) spin_late_fib(25);
}, 1500);
