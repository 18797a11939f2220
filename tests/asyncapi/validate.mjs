// Validates AsyncAPI documents with the official parser; prints one JSON line per file:
// {"file": ..., "valid": bool, "diagnostics": [{"severity", "code", "message", "path"}]}.
// Severity follows the parser: 0 error, 1 warning, 2 information, 3 hint.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const parser = new Parser();
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(readFileSync(file, "utf8"));
  const found = diagnostics.map((d) => ({
    severity: d.severity,
    code: String(d.code),
    message: d.message,
    path: d.path.join("/"),
  }));
  const valid = document !== undefined && !found.some((d) => d.severity === 0);
  console.log(JSON.stringify({ file, valid, diagnostics: found }));
}
