#!/usr/bin/env node
// Compile our own test contracts (contracts/*.sol) with the pinned solc-js and write
// contracts/build/<Contract>.json (abi + creation bytecode) for every deployable contract.
//
//   node scripts/build_contracts.mjs [--solc <dir of the solc npm package>] [--out <dir>]
//
// solc-js is not a dependency of the repository: it lives in the test tool cache
// ($BASIS_LIVE_TEST_CACHE or ~/.cache/basis-live-tests)/solc-<version>, where
// `python tests/chain/tools.py solc` installs it from npm (the tests do the same). The build is
// deterministic: the same sources and settings give byte-identical files, and
// tests/test_staking_onchain.py rebuilds and compares them with the committed ones.
//
// evmVersion is the test node's hardfork (tests/chain/anvil.py HARDFORK): code compiled for a
// later one may use opcodes the node refuses (MCOPY, TSTORE).

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const SOLC_VERSION = "0.8.28";
const SETTINGS = {
  evmVersion: "shanghai",
  optimizer: { enabled: true, runs: 200 },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
};

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function option(name) {
  const at = process.argv.indexOf(name);
  if (at === -1) return undefined;
  if (at + 1 >= process.argv.length) fail(`${name} needs a value`);
  return process.argv[at + 1];
}

function fail(message) {
  console.error(`build_contracts: ${message}`);
  process.exit(1);
}

function loadSolc() {
  const cache = process.env.BASIS_LIVE_TEST_CACHE || path.join(os.homedir(), ".cache", "basis-live-tests");
  const dir = option("--solc") || path.join(cache, `solc-${SOLC_VERSION}`, "node_modules", "solc");
  if (!fs.existsSync(path.join(dir, "package.json"))) {
    fail(`no solc-js at ${dir}: run \`python tests/chain/tools.py solc\` to install solc@${SOLC_VERSION}`);
  }
  const solc = createRequire(path.join(dir, "package.json"))("./index.js");
  if (!solc.version().startsWith(`${SOLC_VERSION}+`)) {
    fail(`solc at ${dir} is ${solc.version()}, not the pinned ${SOLC_VERSION}`);
  }
  return solc;
}

function main() {
  const solc = loadSolc();
  const sourceDir = path.join(root, "contracts");
  const outDir = path.resolve(option("--out") || path.join(sourceDir, "build"));
  const sources = {};
  for (const name of fs.readdirSync(sourceDir).filter((f) => f.endsWith(".sol")).sort()) {
    sources[name] = { content: fs.readFileSync(path.join(sourceDir, name), "utf8") };
  }
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = (output.errors || []).filter((e) => e.severity === "error" || e.type === "Warning");
  if (problems.length) fail(`compilation failed:\n${problems.map((e) => e.formattedMessage).join("\n")}`);

  fs.mkdirSync(outDir, { recursive: true });
  const written = new Set();
  for (const sourceName of Object.keys(output.contracts).sort()) {
    for (const [contractName, compiled] of Object.entries(output.contracts[sourceName])) {
      if (!compiled.evm.bytecode.object) continue; // abstract contracts and interfaces
      if (written.has(contractName)) fail(`two contracts named ${contractName}`);
      const artifact = {
        contractName,
        sourceName: `contracts/${sourceName}`,
        compiler: { solc: solc.version(), evmVersion: SETTINGS.evmVersion, optimizer: SETTINGS.optimizer },
        abi: compiled.abi,
        bytecode: `0x${compiled.evm.bytecode.object}`,
      };
      fs.writeFileSync(path.join(outDir, `${contractName}.json`), `${JSON.stringify(artifact, null, 2)}\n`);
      written.add(`${contractName}.json`);
    }
  }
  for (const stale of fs.readdirSync(outDir).filter((f) => f.endsWith(".json") && !written.has(f))) {
    fs.unlinkSync(path.join(outDir, stale));
  }
  console.log(`compiled ${Object.keys(sources).length} sources with solc ${solc.version()}: ` +
    `${[...written].sort().join(", ")} -> ${path.relative(process.cwd(), outDir) || "."}`);
}

main();
