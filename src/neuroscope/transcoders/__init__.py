"""Transcoders: sparse replacements for a block's MLP (input ``blocks.L.ln2.hook_normalized``, output
``blocks.L.hook_mlp_out``), the replacement model built from them, and attribution graphs over it."""
