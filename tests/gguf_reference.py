"""An independent reading of a GGUF file's weights (Gemma 3, SmolLM2), to check a conversion against.

The conversion dequantises with transformers, which calls the ``gguf`` package's numpy
dequantisers and maps the tensor names itself. This module does both its own way, in torch, from
the block layouts of ggml's quantisation types (ggml-common.h): only the raw bytes of each tensor
come from ``gguf.GGUFReader``. A weight that came out wrong in either reading shows as a
difference between the two.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

QK = 32  # elements per block of the simple types (Q8_0, Q5_0)
QK_K = 256  # elements per super-block of the k-quants (Q4_K, Q6_K)


def _f16(raw: torch.Tensor) -> torch.Tensor:
    """Little-endian float16 values from pairs of bytes (rows of 2 uint8), as float32."""
    return raw.contiguous().view(torch.float16).float()


def _q8_0(blocks: torch.Tensor) -> torch.Tensor:
    # per block: d (f16), 32 int8 quants; x = d * q
    d = _f16(blocks[:, :2])
    q = blocks[:, 2:].contiguous().view(torch.int8).float()
    return d * q


def _q5_0(blocks: torch.Tensor) -> torch.Tensor:
    # per block: d (f16), qh (32 high bits, little-endian), 16 bytes of low nibbles;
    # element j < 16 is low nibble j with bit j of qh, element j + 16 high nibble j with bit j + 16.
    d = _f16(blocks[:, :2])
    qh = blocks[:, 2:6].long()
    high_bits = qh[:, 0] | (qh[:, 1] << 8) | (qh[:, 2] << 16) | (qh[:, 3] << 24)
    bits = (high_bits[:, None] >> torch.arange(32)) & 1
    qs = blocks[:, 6:22].long()
    low = torch.cat([qs & 0x0F, qs >> 4], dim=1)
    return d * ((low | (bits << 4)) - 16).float()


def _q4_1(blocks: torch.Tensor) -> torch.Tensor:
    # per block: d, m (f16), 16 bytes of nibbles; element j < 16 is byte j's low nibble, element
    # j + 16 its high nibble; x = d * q + m
    d, m = _f16(blocks[:, 0:2]), _f16(blocks[:, 2:4])
    qs = blocks[:, 4:20].long()
    return d * torch.cat([qs & 0x0F, qs >> 4], dim=1).float() + m


def _k_scales(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K's 8 six-bit scales and 8 six-bit mins from its 12 packed bytes."""
    q = packed.long()
    scales = torch.empty(q.shape[0], 8, dtype=torch.long)
    mins = torch.empty_like(scales)
    scales[:, :4] = q[:, 0:4] & 63
    mins[:, :4] = q[:, 4:8] & 63
    scales[:, 4:] = (q[:, 8:12] & 0x0F) | ((q[:, 0:4] >> 6) << 4)
    mins[:, 4:] = (q[:, 8:12] >> 4) | ((q[:, 4:8] >> 6) << 4)
    return scales.float(), mins.float()


def _q4_k(blocks: torch.Tensor) -> torch.Tensor:
    # per super-block: d, dmin (f16), 12 bytes of scales and mins, 128 bytes of nibbles; 8 groups of
    # 32, group g = 2i + h reads byte range i (32 bytes) low nibbles (h = 0) or high nibbles (h = 1);
    # x = d * scale_g * q - dmin * min_g
    d, dmin = _f16(blocks[:, 0:2]), _f16(blocks[:, 2:4])
    scales, mins = _k_scales(blocks[:, 4:16])
    qs = blocks[:, 16:144].long().view(-1, 4, 32)
    q = torch.stack([qs & 0x0F, qs >> 4], dim=2).view(-1, 8, 32).float()
    values = (d * scales)[:, :, None] * q - (dmin * mins)[:, :, None]
    return values.view(-1, QK_K)


def _q6_k(blocks: torch.Tensor) -> torch.Tensor:
    # per super-block: 128 bytes ql (low 4 bits), 64 bytes qh (2 high bits each), 16 int8 scales,
    # d (f16). Two halves of 128; in a half, position l < 32 of quarter k takes ql[l + 32 * (k % 2)]'s
    # low (k < 2) or high (k >= 2) nibble and bits 2k..2k+1 of qh[l]; scale 16 elements at a time.
    ql = blocks[:, 0:128].long().view(-1, 2, 2, 32)  # half, which 32 bytes, l
    qh = blocks[:, 128:192].long().view(-1, 2, 32)  # half, l
    scales = blocks[:, 192:208].contiguous().view(torch.int8).float()
    d = _f16(blocks[:, 208:210])
    low = torch.stack([ql[:, :, 0] & 0x0F, ql[:, :, 1] & 0x0F, ql[:, :, 0] >> 4, ql[:, :, 1] >> 4], dim=2)
    high = torch.stack([(qh >> (2 * k)) & 3 for k in range(4)], dim=2)
    q = ((low | (high << 4)) - 32).float().view(-1, QK_K)
    return d * scales.repeat_interleave(16, dim=1) * q


# type name: (bytes per block of QK or QK_K elements, dequantiser)
_TYPES = {
    "Q8_0": (2 + QK, _q8_0),
    "Q4_1": (2 + 2 + QK // 2, _q4_1),
    "Q5_0": (2 + 4 + QK // 2, _q5_0),
    "Q4_K": (2 + 2 + 12 + QK_K // 2, _q4_k),
    "Q6_K": (QK_K // 2 + QK_K // 4 + QK_K // 16 + 2, _q6_k),
}

# GGUF tensor names of a Gemma 3 block -> transformers' names; the norms are stored as 1 + weight
# by llama.cpp (Gemma's RMSNorm multiplies by 1 + weight), so their weight is the stored value - 1.
_LAYER = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def hf_name(gguf_name: str) -> str:
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", gguf_name)
    if not match or match.group(2) not in _LAYER:
        raise KeyError(f"unknown Gemma 3 tensor {gguf_name}")
    return f"model.layers.{match.group(1)}.{_LAYER[match.group(2)]}.weight"


def dequantise(raw: torch.Tensor, type_name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """One tensor's raw bytes (uint8) or float32 values as a float32 tensor of ``shape``
    (transformers' order: rows first)."""
    if type_name == "F32":
        return raw.float().reshape(shape)
    block_bytes, decode = _TYPES[type_name]
    return decode(raw.reshape(-1, block_bytes)).reshape(shape)


def gemma3_state_dict(gguf: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every weight of a Gemma 3 GGUF file by transformers' name, and each one's GGUF type."""
    from gguf import GGUFReader

    weights, types = {}, {}
    for tensor in GGUFReader(gguf).tensors:
        name = hf_name(tensor.name)
        shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists the contiguous dimension first
        value = dequantise(torch.from_numpy(tensor.data.copy()), tensor.tensor_type.name, shape)
        weights[name] = value - 1 if name.endswith("norm.weight") else value
        types[name] = tensor.tensor_type.name
    return weights, types


# GGUF tensor names of a LLaMA block (SmolLM2) -> transformers' names; its norms are stored as is.
_LLAMA_LAYER = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}


def _unpermute_rotary(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's converter reorders each head's rows of q_proj and k_proj so that the two halves
    rotary embedding pairs (row i with row i + head_dim / 2) lie side by side (rows 2i, 2i + 1);
    this puts them back in transformers' order (first halves, then second halves)."""
    rows, columns = weight.shape
    half = rows // heads // 2
    return weight.reshape(heads, half, 2, columns).transpose(1, 2).reshape(rows, columns)


def smollm2_state_dict(gguf: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every weight of SmolLM2's GGUF file (a LLaMA) by transformers' name, and each one's GGUF type."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf)
    heads = int(reader.fields["llama.attention.head_count"].parts[-1][0])
    kv_heads = int(reader.fields["llama.attention.head_count_kv"].parts[-1][0])
    weights, types = {}, {}
    for tensor in reader.tensors:
        if tensor.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif tensor.name == "output_norm.weight":
            name = "model.norm.weight"
        else:
            match = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", tensor.name)
            if not match or match.group(2) not in _LLAMA_LAYER:
                raise KeyError(f"unknown LLaMA tensor {tensor.name}")
            name = f"model.layers.{match.group(1)}.{_LLAMA_LAYER[match.group(2)]}.weight"
        shape = tuple(int(n) for n in reversed(tensor.shape))
        value = dequantise(torch.from_numpy(tensor.data.copy()), tensor.tensor_type.name, shape)
        if name.endswith("q_proj.weight"):
            value = _unpermute_rotary(value, heads)
        elif name.endswith("k_proj.weight"):
            value = _unpermute_rotary(value, kv_heads)
        weights[name] = value
        types[name] = tensor.tensor_type.name
    return weights, types

