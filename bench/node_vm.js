// The in-process peer of code mode's cold start: a fresh V8 context (node's `vm`) compiling
// and running the same "hello" script, timed per run. usage: node node_vm.js [RUNS]
const vm = require("vm");
const runs = Number(process.argv[2] || 1000);
const code = 'const greeting = "hello"; log(greeting); greeting;';
const samples = [];
for (let i = 0; i < runs + 100; i++) {
  const t = process.hrtime.bigint();
  const out = [];
  const context = vm.createContext({ log: (s) => out.push(s) });
  new vm.Script(code).runInContext(context);
  const us = Number(process.hrtime.bigint() - t) / 1000;
  if (i >= 100) samples.push(us);
}
samples.sort((a, b) => a - b);
const q = (p) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))].toFixed(1);
console.log(`node vm.createContext + run: p50 ${q(0.5)} us, p90 ${q(0.9)} us, p99 ${q(0.99)} us (${runs} runs)`);
