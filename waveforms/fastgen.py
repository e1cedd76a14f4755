"""Fast WaveNet generation: cached activations, O(layers) work per sample, the whole sampling loop compiled by XLA.

Each step mirrors `model.build_wavenet` at one time position and reads the same weights by layer name:

    full pass (model.py)                       one step here
    input_embedding(codes)                     embedding row of the current code                          (B, R)
    block_i_dilated_conv over x_i              past taps x_i[t - j·d_i] from the ring, all blocks in one
                                               batched matmul; present tap x_i[t] @ kernel[K-1]           (B, 2D)
    + global / local conditioning              per-sequence bias / per-step projection                    (B, 2D)
    gated unit, block_i_residual               the same maths (sigmoid written as a tanh)                 (B, D), (B, R)
    skip_projection(concat z_i), output head   one (L·D → S) matmul, the same head                        (B, Q)

The ring holds each block's last (K-1)·d_i inputs in ONE tensor, so a step reads every block's past with one gather
and stores the present with one scatter: O(layers) work and sum(d)·B·R floats of state. Sampling is Gumbel-max with
counter-based noise made inside the step. A chunk of steps is one compiled XLA call (progress is reported between
chunks), and a batch can be split over CPU cores, each shard its own compiled loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf

from waveforms import output_head
from waveforms.audio import SILENCE_CODE
from waveforms.model import WaveNetConfig, block_name, layer_names


def _value(variable) -> tf.Tensor:
    """The current value of a (shared) Keras variable as a float32 tensor, read inside the compiled function: sampling
    runs in float32 whatever precision the model was trained in (mixed precision keeps float32 variables anyway)."""
    return tf.cast(tf.convert_to_tensor(variable.value), tf.float32)


def _hash32(x: tf.Tensor) -> tf.Tensor:
    """A 32-bit integer mixer (xorshift-multiply, "lowbias32"): counter-based noise without a stateful RNG."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, np.uint32(16))) * np.uint32(0x7FEB352D)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, np.uint32(15))) * np.uint32(0x846CA68B)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, np.uint32(16)))


def gumbel_noise(seed: tf.Tensor, t: tf.Tensor, rows: tf.Tensor, classes: int) -> tf.Tensor:
    """Gumbel(0, 1) noise (len(rows), classes) for time t, a pure function of (seed, t, row, class)."""
    cells = tf.cast(rows, tf.uint32)[:, None] * np.uint32(classes) + tf.cast(tf.range(classes), tf.uint32)[None]
    key = _hash32(tf.bitwise.bitwise_xor(tf.cast(t, tf.uint32) * np.uint32(0x9E3779B9), tf.cast(seed, tf.uint32)))
    bits = _hash32(_hash32(tf.bitwise.bitwise_xor(cells, key)) + tf.cast(t, tf.uint32))
    return -tf.math.log(-tf.math.log(uniform_from_bits(bits)))


def uniform_from_bits(bits: tf.Tensor) -> tf.Tensor:
    """uint32 -> float32 strictly inside (0, 1). 23 bits: (2**23 - 1 + 0.5) / 2**23 is exact in float32. With 24 bits
    the top value rounded to 1.0, its Gumbel noise was +inf and that class was drawn whatever its probability: one
    random click in about every 4 s of generated audio (measured on a model that only predicts silence)."""
    return (tf.cast(tf.bitwise.right_shift(bits, np.uint32(9)), tf.float32) + 0.5) * (1.0 / (1 << 23))


def configure_threads(intra_op: int = 1, inter_op: int | None = None) -> bool:
    """One thread per op, one shard per core: measured fastest for sampling (intra-op pools add sync per step).
    Works only before TensorFlow runs its first op; returns whether the setting took effect."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op or max(2, os.cpu_count() or 1))
    except RuntimeError:  # the runtime is already initialised
        return False
    return True


class _ShardSampler:
    """One compiled sampling loop over `batch_size` sequences (rows first_row.. of the whole batch)."""

    def __init__(self, model, config: WaveNetConfig, batch_size: int, first_row: int, chunk_size: int):
        self.config = config
        self.batch_size = batch_size
        self.first_row = first_row
        self.chunk_size = chunk_size
        self._layers = {name: model.get_layer(name) for name in layer_names(config)}
        dilations = np.asarray(config.dilations, np.int32)
        self._dilations = dilations  # (L,)
        self._ring_lengths = (config.kernel_size - 1) * dilations  # (L,) inputs block i must remember
        self._ring_offsets = np.concatenate([[0], np.cumsum(self._ring_lengths)[:-1]]).astype(np.int32)  # (L,)
        self.ring_rows = int(self._ring_lengths.sum())
        self._compiled = {}

    # ----- weights, fused from the shared Keras variables on every call (cheap; never a stale copy) -----
    def _fused_weights(self) -> dict[str, tf.Tensor]:
        """Weights rearranged for the step. sigmoid(g) = (1 + tanh(g/2)) / 2, so the gate columns are pre-scaled by
        1/2 and the 1/2 is folded into the matrices that read z: one tanh over [filter | gate] per block."""
        c, layers = self.config, self._layers
        K, L, D = c.kernel_size, c.num_layers, c.dilation_channels
        gate_scale = tf.concat([tf.ones(D), tf.fill([D], 0.5)], axis=0)  # (2D,)
        conv = [layers[f"{block_name(i)}_dilated_conv"] for i in range(L)]
        kernels = [_value(layer.kernel) * gate_scale for layer in conv]  # each (K, R, 2D)
        embedding = _value(layers["input_embedding"].embeddings)  # (Q, R)
        weights = {
            "embedding": embedding,
            # block 0's present tap reads the embedding only: a (Q, 2D) table replaces its matmul
            "first_present_table": tf.matmul(embedding, kernels[0][K - 1]),  # (Q, 2D)
            # taps 0..K-2 see the past: stacked for one batched matmul over all blocks
            "past_kernel": tf.stack([tf.reshape(k[: K - 1], (-1, 2 * D)) for k in kernels]),  # (L, (K-1)R, 2D)
            "present_kernels": [k[K - 1] for k in kernels],  # L × (R, 2D)
            "gate_bias": tf.stack([_value(layer.bias) * gate_scale for layer in conv])[:, None, :],  # (L, 1, 2D)
            "residual_kernels": [0.5 * _value(layers[f"{block_name(i)}_residual"].kernel) for i in range(L - 1)],
            "residual_biases": [_value(layers[f"{block_name(i)}_residual"].bias) for i in range(L - 1)],
            "skip_kernel": 0.5 * _value(layers["skip_projection"].kernel),  # (L·D, S)
            "skip_bias": _value(layers["skip_projection"].bias),
            "hidden_kernel": _value(layers["output_hidden"].kernel),  # (S, S)
            "hidden_bias": _value(layers["output_hidden"].bias),
            "logits_kernel": _value(layers["output_logits"].kernel),  # (S, Q)
            "logits_bias": _value(layers["output_logits"].bias),
        }
        if c.global_condition_classes:
            projection = _value(layers["global_condition_projection"].kernel)  # (G, L·2D)
            weights["global_table"] = tf.matmul(_value(layers["global_embedding"].embeddings), projection)
        if c.local_condition_channels:
            kernel = _value(layers["local_condition_projection"].kernel)  # (C, L·2D + S)
            scale = tf.concat([tf.tile(gate_scale, [L]), tf.ones(c.skip_channels)], axis=0)
            weights["local_kernel"] = kernel * scale
        return weights

    def _global_bias(self, weights, global_condition) -> tf.Tensor:
        """Per-sequence conditioning added before every gate: (L, B, 2D); zeros when unconditioned."""
        c, B, D = self.config, self.batch_size, self.config.dilation_channels
        if not c.global_condition_classes:
            return tf.zeros((c.num_layers, 1, 2 * D))
        bias = tf.gather(weights["global_table"], global_condition)  # (B, L·2D)
        bias = tf.reshape(bias, (B, c.num_layers, 2 * D)) * tf.concat([tf.ones(D), tf.fill([D], 0.5)], axis=0)
        return tf.transpose(bias, (1, 0, 2))  # (L, B, 2D)

    # ----- one step: the mirror of build_wavenet for a single time position -----
    def _step(self, weights, ring, t, code, gate_bias, local_step):
        """ring (rows, B, R), t scalar, code (B,) → (new ring, logits (B, Q)).

        Block i keeps its last (K-1)·d_i inputs in rows offset_i + (time mod (K-1)·d_i) of the ring, so its past taps
        are one gather for all blocks and its present input one scatter (for K = 2 the very row just read).
        """
        c = self.config
        L, D, K, B, S = c.num_layers, c.dilation_channels, c.kernel_size, self.batch_size, c.skip_channels
        rows = [
            self._ring_offsets + tf.math.floormod(t - back * self._dilations, self._ring_lengths)
            for back in range(K - 1, 0, -1)  # tap k = K-1-back reads x[t - back·d]
        ]
        past = tf.gather(ring, tf.concat(rows, axis=0))  # ((K-1)·L, B, R)
        if K > 2:
            past = tf.concat(tf.split(past, K - 1, axis=0), axis=-1)  # (L, B, (K-1)R)
        gates_in = tf.matmul(past, weights["past_kernel"]) + gate_bias  # (L, B, 2D)
        if local_step is not None:
            local = tf.matmul(local_step, weights["local_kernel"])  # (B, L·2D + S)
            gates_in = gates_in + tf.transpose(tf.reshape(local[:, : L * 2 * D], (B, L, 2 * D)), (1, 0, 2))

        x = tf.gather(weights["embedding"], code)  # (B, R)
        inputs, gated = [], []
        for i in range(L):
            inputs.append(x)
            if i == 0:
                present = tf.gather(weights["first_present_table"], code)  # (B, 2D)
            else:
                present = tf.matmul(x, weights["present_kernels"][i])  # (B, 2D)
            activated = tf.tanh(present + gates_in[i])  # (B, 2D): [tanh(filter) | tanh(gate / 2)]
            z = activated[:, :D] * (1.0 + activated[:, D:])  # (B, D): 2 · tanh(filter) · sigmoid(gate)
            gated.append(z)
            if i < L - 1:
                if B >= 4:
                    # [x | z] @ [[I], [W]]: the stream leaves each block as a matmul output, which XLA keeps in memory;
                    # written as x + z @ W, XLA re-adds the whole chain inside every later fusion (O(L²) adds).
                    # (At batch < 4 the matrix-vector kernels fuse the add and the wider matmul costs more.)
                    kernel = tf.concat([tf.eye(c.residual_channels), weights["residual_kernels"][i]], axis=0)
                    x = tf.matmul(tf.concat([x, z], axis=-1), kernel) + weights["residual_biases"][i]  # (B, R)
                else:
                    x = x + tf.matmul(z, weights["residual_kernels"][i]) + weights["residual_biases"][i]  # (B, R)
        write_rows = self._ring_offsets + tf.math.floormod(t, self._ring_lengths)  # (L,)
        ring = tf.tensor_scatter_nd_update(ring, write_rows[:, None], tf.stack(inputs))  # (rows, B, R)
        skips = tf.matmul(tf.concat(gated, axis=-1), weights["skip_kernel"]) + weights["skip_bias"]  # (B, S)
        hidden = tf.matmul(tf.nn.relu(skips), weights["hidden_kernel"]) + weights["hidden_bias"]  # (B, S)
        if local_step is not None:
            hidden = hidden + local[:, L * 2 * D : L * 2 * D + S]
        outputs = tf.matmul(tf.nn.relu(hidden), weights["logits_kernel"]) + weights["logits_bias"]  # (B, Q or 3M)
        return ring, output_head.log_probs(outputs, c.output_mixtures, c.quantization_channels)  # (B, Q)

    # ----- a compiled chunk of steps -----
    def chunk_function(self, record_logits: bool, score: bool = False):
        """run(ring, t, code, forced, num_forced, steps, inverse_temperature, log_min_p, seed, global_condition, local)
        → (ring, code, codes (N, B), logits (N, B, Q) or a dummy, scores (B,)). Step s emits forced[s] while
        s < num_forced. With score, scores sum the log-probability (natural log, temperature 1) of every sampled code
        of the chunk (forced codes add nothing); otherwise they are zeros."""
        key = (record_logits, score)
        if key in self._compiled:
            return self._compiled[key]
        c, N, B, Q = self.config, self.chunk_size, self.batch_size, self.config.quantization_channels
        has_local = c.local_condition_channels > 0
        rows = np.arange(self.first_row, self.first_row + B, dtype=np.int32)

        @tf.function(jit_compile=True, autograph=False)
        def run_chunk(ring, t, code, forced, num_forced, steps, inverse_temperature, log_min_p, seed, global_condition,
                      local):  # fmt: skip
            weights = self._fused_weights()
            gate_bias = self._global_bias(weights, global_condition) + weights["gate_bias"]  # (L, B or 1, 2D)
            codes_out = tf.zeros((N, B), tf.int32)
            logits_out = tf.zeros((N if record_logits else 1, B, Q))

            def body(s, ring, code, codes_out, logits_out, scores):
                local_step = local[s] if has_local else None
                ring, logits = self._step(weights, ring, t + s, code, gate_bias, local_step)
                if record_logits:  # teacher forcing only: no sampling
                    logits_out = tf.tensor_scatter_nd_update(logits_out, [[s]], logits[None])
                    code = forced[s]
                else:
                    scaled = logits * inverse_temperature  # (B, Q)
                    # min-p truncation: classes less likely than min_p times the likeliest are never drawn
                    # (log_min_p = -inf keeps every class); one max and one select, no sort
                    floor = tf.reduce_max(scaled, axis=-1, keepdims=True) + log_min_p  # (B, 1)
                    noisy = tf.where(scaled >= floor, scaled + gumbel_noise(seed, t + s, rows, Q), -np.inf)  # (B, Q)
                    # argmax as max then first index: XLA fuses the noise into a variadic argmax reduction and
                    # computes it unvectorised; two plain reductions leave the noise in a vectorised loop.
                    best = tf.reduce_max(noisy, axis=-1, keepdims=True)  # (B, 1)
                    sampled = tf.reduce_min(tf.where(noisy >= best, tf.range(Q)[None], Q), axis=-1)  # (B,)
                    code = tf.where(s < num_forced, forced[s], sampled)
                    if score:
                        log_p = tf.gather(tf.nn.log_softmax(logits), code, batch_dims=1)  # (B,)
                        scores = scores + tf.where(s < num_forced, 0.0, log_p)
                codes_out = tf.tensor_scatter_nd_update(codes_out, [[s]], code[None])
                return s + 1, ring, code, codes_out, logits_out, scores

            _, ring, code, codes_out, logits_out, scores = tf.while_loop(
                lambda s, *_: s < steps, body, (tf.constant(0), ring, code, codes_out, logits_out, tf.zeros((B,)))
            )
            return ring, code, codes_out, logits_out, scores

        self._compiled[key] = run_chunk
        return run_chunk


def resample(log_weights: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Systematic resampling of each sequence's candidates: log_weights (S, P), one uniform in [0, 1) per sequence
    -> (S, P) row indices in 0..S·P-1, the candidate each new row continues. A candidate of weight w gets floor(P·w)
    or ceil(P·w) copies (lower variance than drawing P times); equal weights keep every candidate in place."""
    log_weights = np.asarray(log_weights, np.float64)
    S, P = log_weights.shape
    weights = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))
    edges = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)  # (S, P)
    points = (np.asarray(uniforms, np.float64)[:, None] + np.arange(P)) / P  # (S, P), increasing
    chosen = np.stack([np.searchsorted(edges[i], points[i], side="right") for i in range(S)])
    return np.minimum(chosen, P - 1) + P * np.arange(S)[:, None]


class FastGenerator:
    """Cached, compiled sampling from a trained `build_wavenet(config)` model (weights shared, read by layer name).

    workers: the batch is split into this many shards sampled concurrently (one per CPU core pays off from batch 8
    up; default: 2 shards from batch 8 on if the machine has 2+ cores, else 1).

    particles: each sequence is sampled as this many candidates, resampled after every chunk by their chunk's
    likelihood (`generate`, sequential Monte Carlo); 1 (the default) is plain ancestral sampling. The candidates of
    one sequence stay in one shard, so the work is batch_size x particles rows.
    """

    def __init__(
        self, model, config: WaveNetConfig, batch_size: int = 1, *, chunk_size: int = 4096, workers: int | None = None,
        particles: int = 1,
    ):  # fmt: skip
        config.validate()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if particles < 1:
            raise ValueError(f"particles must be >= 1, got {particles}")
        missing = [name for name in layer_names(config) if name not in {layer.name for layer in model.layers}]
        if missing:
            raise ValueError(f"model does not match the config: missing layers {missing}")
        rows = batch_size * particles
        if workers is None:
            workers = 2 if rows >= 8 and batch_size >= 2 and (os.cpu_count() or 1) >= 2 else 1
        if not 1 <= workers <= batch_size:
            raise ValueError(f"workers must be in [1, batch_size={batch_size}], got {workers}")
        self.model = model
        self.config = config
        self.batch_size = batch_size
        self.particles = particles
        self.chunk_size = chunk_size
        bounds = np.linspace(0, batch_size, workers + 1).round().astype(int) * particles  # whole sequences per shard
        self._shards = [
            _ShardSampler(model, config, int(hi - lo), int(lo), chunk_size)
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None

    def _run(
        self,
        first_codes,
        forced_all,
        num_steps,
        num_forced,
        *,
        temperature,
        min_p,
        seed,
        global_condition,
        local_condition,
        record_logits,
        progress,
        sharpen=None,
    ):
        """Runs num_steps steps from codes first_codes (rows,); step s emits forced_all[s] (rows,) while s < num_forced
        (rows = batch_size x particles, a sequence's candidates side by side). Returns codes (rows, num_steps) and, when
        record_logits, logits (rows, num_steps, Q). With sharpen and particles > 1 the candidates of each sequence are
        resampled after every chunk (`resample`), and each returned row is the lineage of its final candidate."""
        c, N, P = self.config, self.chunk_size, self.particles
        score = sharpen is not None and P > 1 and not record_logits
        inverse_temperature = tf.constant(1.0 / temperature, tf.float32)
        log_min_p = tf.constant(np.log(min_p) if min_p > 0 else -np.inf, tf.float32)
        noise_seed = tf.constant(seed % (1 << 32), tf.int64)
        states = []
        for shard in self._shards:
            rows = slice(shard.first_row, shard.first_row + shard.batch_size)
            condition = np.zeros((shard.batch_size,), np.int32) if global_condition is None else global_condition[rows]
            ring = tf.zeros((shard.ring_rows, shard.batch_size, c.residual_channels))
            states.append([ring, tf.constant(first_codes[rows]), tf.constant(condition), rows])

        def run_shard(shard, state, start, steps, uniforms):
            ring, code, condition, rows = state
            forced = np.zeros((N, shard.batch_size), np.int32)
            chunk_forced = forced_all[start : min(start + N, num_forced), rows]
            forced[: len(chunk_forced)] = chunk_forced
            local = np.zeros((1, 1, 1), np.float32)
            if c.local_condition_channels:
                local = np.zeros((N, shard.batch_size, c.local_condition_channels), np.float32)
                local[:steps] = local_condition[start : start + steps, rows]
            ring, code, codes_out, logits_out, scores = shard.chunk_function(record_logits, score)(
                ring,
                tf.constant(start, tf.int32),
                code,
                tf.constant(forced),
                tf.constant(max(0, min(N, num_forced - start)), tf.int32),
                tf.constant(steps, tf.int32),
                inverse_temperature,
                log_min_p,
                noise_seed,
                condition,
                tf.constant(local),
            )
            parents = np.arange(shard.batch_size)
            if score:
                log_weights = sharpen * scores.numpy().reshape(-1, P)  # (sequences in the shard, P)
                parents = resample(log_weights, uniforms[shard.first_row // P :][: len(log_weights)]).ravel()
                ring, code = tf.gather(ring, parents, axis=1), tf.gather(code, parents)
            state[0], state[1] = ring, code
            codes_out = codes_out.numpy()[:steps]
            return codes_out, (logits_out.numpy()[:steps] if record_logits else None), parents + shard.first_row

        codes, logits, ancestry = [], [], []
        for start in range(0, num_steps, N):
            steps = min(N, num_steps - start)
            # one uniform per sequence and chunk, from (seed, chunk start): the same audio whatever the shards
            uniforms = np.random.default_rng([seed % (1 << 32), start]).random(self.batch_size) if score else None
            jobs = [(shard, state, start, steps, uniforms) for shard, state in zip(self._shards, states, strict=True)]
            results = list(self._pool.map(lambda job: run_shard(*job), jobs)) if self._pool else [run_shard(*jobs[0])]
            codes.append(np.concatenate([r[0] for r in results], axis=1))  # (steps, rows)
            ancestry.append(np.concatenate([r[2] for r in results]))  # (rows,): the candidate each row continues
            if record_logits:
                logits.append(np.concatenate([r[1] for r in results], axis=1))  # (steps, rows, Q)
            if progress is not None:
                progress(start + steps, num_steps)
        if score:  # trace every final candidate back through the chunks
            row = np.arange(len(ancestry[0]))
            for i in range(len(codes) - 1, -1, -1):
                row = ancestry[i][row]
                codes[i] = codes[i][:, row]
        codes = np.concatenate(codes, axis=0).T  # (rows, num_steps)
        return codes, (np.concatenate(logits, axis=0).transpose(1, 0, 2) if record_logits else None)

    # ----- public API -----
    def step_logits(self, codes, global_condition=None, local_condition=None) -> np.ndarray:
        """Teacher forcing: feeds codes (B, T) through the cached steps; returns logits (B, T, Q) like model(codes)."""
        codes = self._per_row(self._check_codes(codes, "codes"))
        T = codes.shape[1]
        local = self._per_row(self._check_local(local_condition, T), axis=1)
        _, logits = self._run(
            codes[:, 0],
            codes[:, 1:].T,
            T,
            T - 1,
            temperature=1.0,
            min_p=0.0,
            seed=0,
            global_condition=self._per_row(self._check_global(global_condition)),
            local_condition=local,
            record_logits=True,
            progress=None,
        )
        return logits[:: self.particles]

    def generate(
        self,
        num_samples: int,
        *,
        temperature: float = 1.0,
        min_p: float = 0.0,
        seed: int = 0,
        seed_codes=None,
        global_condition=None,
        local_condition=None,
        progress: Callable[[int, int], None] | None = None,
        sharpen: float = 1.0,
    ):
        """Samples num_samples new codes (B, num_samples) int32 after seed_codes (B, S), or after silence.

        temperature divides the logits; min_p then leaves out every class whose probability is below min_p times the
        likeliest one's (0 keeps all, 1 is greedy): a truncation without a sort, so it costs no sampling speed.

        With particles > 1, every chunk_size samples each sequence's candidates are resampled with weights
        p(chunk)^sharpen, p the model's probability (temperature 1) of the codes the candidate drew in the chunk: the
        clip then follows likelier passages than one draw would, and 0 keeps the candidates unweighted. Unlike a lower
        temperature, which sharpens every sample (and drifts into silence or a loud constant, docs/quality.md), this
        sharpens whole passages.

        The defaults here are the neutral ones (the model's own distribution: temperature 1, no truncation, sharpen 1);
        the product's measured defaults belong to waveforms.generate (TEMPERATURE, MIN_P, SHARPEN).

        progress(done, total) is called after every chunk. local_condition (B, num_samples, C) conditions the new
        samples; the seed steps see zeros.
        """
        if not isinstance(num_samples, int | np.integer) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 <= min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {min_p}")
        if not sharpen >= 0:
            raise ValueError(f"sharpen must be >= 0, got {sharpen}")
        if seed_codes is None:
            # Silence as the model sees it in training: a whole receptive field of the zero code.
            seed_codes = np.full((self.batch_size, self.config.receptive_field), SILENCE_CODE, np.int32)
        seed_codes = self._per_row(self._check_codes(seed_codes, "seed_codes"))
        S = seed_codes.shape[1]
        total = S - 1 + num_samples
        local = self._per_row(self._check_local(local_condition, num_samples), axis=1)
        if local is not None:
            local = np.concatenate([np.zeros((S - 1,) + local.shape[1:], np.float32), local], axis=0)
        report = None if progress is None else (lambda done, _total: progress(max(0, done - (S - 1)), num_samples))
        codes, _ = self._run(
            seed_codes[:, 0],
            seed_codes[:, 1:].T,
            total,
            S - 1,
            temperature=temperature,
            min_p=float(min_p),
            seed=int(seed),
            global_condition=self._per_row(self._check_global(global_condition)),
            local_condition=local,
            record_logits=False,
            progress=report,
            sharpen=float(sharpen),
        )
        return codes[:: self.particles, S - 1 :]

    def _per_row(self, values, axis: int = 0):
        """A per-sequence array repeated for each sequence's candidates (None stays None)."""
        if values is None or self.particles == 1:
            return values
        return np.repeat(values, self.particles, axis=axis)

    # ----- input checks: one clear error per bad argument -----
    def _check_codes(self, codes, name):
        codes = np.asarray(codes)
        Q = self.config.quantization_channels
        if codes.ndim != 2 or codes.shape[0] != self.batch_size or codes.shape[1] < 1:
            raise ValueError(f"{name} must have shape (batch_size={self.batch_size}, length>=1), got {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0 or codes.max() >= Q:
            raise ValueError(f"{name} must be integer codes in [0, {Q})")
        return codes.astype(np.int32)

    def _check_global(self, global_condition):
        classes = self.config.global_condition_classes
        if not classes:
            if global_condition is not None:
                raise ValueError("global_condition given but the model has global_condition_classes=0")
            return None
        if global_condition is None:
            raise ValueError(f"global_condition (batch_size={self.batch_size},) is required: the model is conditioned")
        values = np.asarray(global_condition)
        if values.shape != (self.batch_size,) or values.min() < 0 or values.max() >= classes:
            raise ValueError(
                f"global_condition must be ({self.batch_size},) integers in [0, {classes}), got {values!r}"
            )
        return values.astype(np.int32)

    def _check_local(self, local_condition, length):
        channels = self.config.local_condition_channels
        if not channels:
            if local_condition is not None:
                raise ValueError("local_condition given but the model has local_condition_channels=0")
            return None
        expected = (self.batch_size, length, channels)
        if local_condition is None or np.shape(local_condition) != expected:
            raise ValueError(f"local_condition must have shape {expected}, got {np.shape(local_condition)}")
        return np.asarray(local_condition, np.float32).transpose(1, 0, 2)  # (T, B, C): time-major for the loop
