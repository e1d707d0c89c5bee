// Readable names for the Workbench API's node ids (docs/transcoders/README.md, "Node ids"): f_L_P_F (feature F of
// layer L at position P), e_L_P (error), t_P (token), l_T (logit of token T), and the QK view's residual parts
// (attn, bias, mlp, pos_embed, const). Unknown ids are shown as they are.
import { showToken } from "../state";

const KINDS: Record<string, string> = { a: "attn", b: "bias", m: "mlp", e: "err" };

export function describeNode(id: string, tokens: string[]): string {
  const [kind, ...rest] = id.split("_");
  const n = rest.map(Number);
  if (n.some((x) => !Number.isInteger(x))) return id;
  const at = (p: number) => `@${p} ${showToken(tokens[p] ?? "")}`;
  if (kind === "f" && n.length === 3) return `L${n[0]} #${n[2]} ${at(n[1])}`;
  if (kind in KINDS && n.length === 2) return `${KINDS[kind]} L${n[0]} ${at(n[1])}`;
  if (kind === "t" && n.length === 1) return `token ${at(n[0])}`;
  return id;
}
