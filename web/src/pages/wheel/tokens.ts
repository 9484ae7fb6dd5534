// Showing tokens honestly: whitespace made visible, and tokens whose bytes are not UTF-8 on their own shown as
// those bytes (⟨0xE2 0x80⟩) instead of a replacement character.
import type { Schemas } from "../../api/client";

export type Token = Schemas["TokenOut"];

const VISIBLE: Record<string, string> = { " ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍" };

/** The token's raw bytes (`bytes` is standard base64). */
export function tokenBytes(token: Token): Uint8Array {
  const raw = atob(token.bytes);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

export function hexBytes(token: Token): string {
  return Array.from(tokenBytes(token), (b) => `0x${b.toString(16).toUpperCase().padStart(2, "0")}`).join(" ");
}

/** A label for the token with its whitespace and control characters visible; raw bytes as ⟨0xNN …⟩. */
export function tokenLabel(token: Token): string {
  if (!token.is_valid_utf8) return `⟨${hexBytes(token)}⟩`;
  if (token.text === "") return `⟨empty #${token.id}⟩`;
  let out = "";
  for (const ch of token.text) {
    const code = ch.codePointAt(0)!;
    if (VISIBLE[ch]) out += VISIBLE[ch];
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return out;
}

/** Words for a screen reader: what the visible-whitespace symbols and byte tokens stand for. */
export function tokenSpoken(token: Token): string {
  if (!token.is_valid_utf8) return `raw bytes ${hexBytes(token)}`;
  const label = tokenLabel(token);
  const notes: string[] = [];
  if (token.text.startsWith(" ")) notes.push("leading space");
  if (token.text.includes("\n")) notes.push("newline");
  if (token.text.includes("\t")) notes.push("tab");
  if (token.text.trim() === "" && token.text !== "") return `${label} (whitespace: ${notes.join(", ") || "spaces"})`;
  return notes.length ? `${label} (${notes.join(", ")})` : label;
}

/** The token as it reads inside the running text: real spaces, tabs and line breaks, other control
 * characters as \xNN, bytes as ⟨0xNN⟩. */
export function tokenInline(token: Token): string {
  if (!token.is_valid_utf8) return `⟨${hexBytes(token)}⟩`;
  let out = "";
  for (const ch of token.text) {
    const code = ch.codePointAt(0)!;
    const control = (code < 0x20 && ch !== "\n" && ch !== "\t") || code === 0x7f;
    out += control ? `\\x${code.toString(16).padStart(2, "0")}` : ch;
  }
  return out;
}

export function percent(p: number): string {
  if (p >= 0.1) return `${(p * 100).toFixed(1)}%`;
  if (p >= 0.001) return `${(p * 100).toFixed(2)}%`;
  if (p > 0) return `${(p * 100).toPrecision(2)}%`;
  return "0%";
}

/** Cuts a label to `n` characters (by code point) with an ellipsis. */
export function clip(label: string, n: number): string {
  const chars = Array.from(label);
  return chars.length <= n ? label : `${chars.slice(0, n - 1).join("")}…`;
}
