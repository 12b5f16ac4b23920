// Validates an AsyncAPI document with the official parser (independent of our Python code).
import { Parser } from '@asyncapi/parser';
import { readFileSync } from 'node:fs';
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(process.argv[2], 'utf8'));
const errors = diagnostics.filter(d => d.severity === 0);
for (const d of diagnostics) console.log(JSON.stringify({severity: d.severity, code: d.code, message: d.message, path: d.path.join('.')}));
console.log(JSON.stringify({valid: document !== undefined && errors.length === 0, errors: errors.length, channels: document ? document.channels().length : 0}));
process.exit(document !== undefined && errors.length === 0 ? 0 : 1);
