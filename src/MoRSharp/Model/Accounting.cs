using System.Text.Json;
using System.Text.Json.Nodes;
using MoRSharp.Config;

namespace MoRSharp.Model;

/// <summary>
/// Parameter counts, FLOPs per token and KV-cache size of a configuration, computed arithmetically
/// (no weights are allocated, TorchSharp is not touched).
/// <para><b>Parameters.</b> A decoder layer has q (d×H·h), k and v (d×K·h each, GQA), o (H·h×d), the SwiGLU gate/up/down
/// (3·d·d_ff) and two RMSNorm weights (2·d); every unique layer has the same count. Embedding = V·d, counted once when tied;
/// an untied LM head adds another V·d to <see cref="EmbeddingParams"/>. Non-embedding = unique layers + final norm + routers.
/// Routers: expert-choice has one router per recursion (linear d→1; mlp d→2d→1), plus an equal set of auxiliary routers
/// when <c>aux_loss = aux_router</c>; token-choice has one router (linear d→N_r; mlp d→2d→N_r). Routers are counted even
/// for <c>random_router</c> (the modules still exist).</para>
/// <para><b>FLOPs per token, forward</b> (multiply–add = 2 FLOPs).
/// <see cref="FlopsPerTokenPaper"/> is the paper's isoFLOP accounting (spec §4.4, [P] App. D): per layer
/// lin = 2·(4d² + 3·d·d_ff) (GQA ignored), attn = 2·N_ctx·d (causal QKᵀ + AV); no embedding, LM head, norms or routers.
/// Without routing F = L·(lin + attn). With routing, with P = unique prelude + coda layers (2 for Middle-Cycle, 0 for Cycle):
/// recursion-wise caching F = P·(lin+attn) + B·Σ_r (lin·c_r + attn·c_r²);
/// recursive KV sharing F = P·(lin+attn) + B·(lin·c_1 + attn·c_1²) + B·Σ_{r≥2} ((lin − 4d²)·c_r + attn·c_r)
/// (later recursions skip the K/V projections and attend over the full recursion-1 cache). A recursive model without
/// routing is the same with every c_r = 1. Token-choice assumes perfect balance, i.e. the same capacities.</para>
/// <para><see cref="FlopsPerTokenExact"/> is this project's own count of the matrix products of one forward pass over a
/// full context of N tokens, divided by N. Included: q/k/v/o with GQA-sized k/v; SwiGLU; causal attention QKᵀ and AV
/// (4·H·h per query–key pair; a full causal pass has N(N+1)/2 pairs, i.e. (N+1)/2 keys per token on average);
/// the LM head 2·d·V per token; routers (expert: 2·d per candidate token per recursion for linear, 2·(d·2d + 2d) for mlp,
/// doubled with auxiliary routers; token: 2·d·N_r per token for linear, 2·(d·2d + 2d·N_r) for mlp).
/// Recursion r processes k_r tokens: expert-choice k_r = max(1, ⌊c_r·N⌋) and the candidates of router r are the k_{r−1}
/// survivors (k_0 = N); token-choice uses the balanced expectation k_r = c_r·N; no routing k_r = N.
/// Linear terms scale with k_r/N. Recursion-wise caching: the k_r selected tokens attend causally among themselves
/// (k_r(k_r+1)/2 pairs, quadratic in capacity). KV sharing, recursions r ≥ 2: no K/V projections, and each selected query
/// attends to its full causal prefix ((N+1)/2 keys on average, linear in capacity).
/// Not included: embedding lookup, RMSNorm, RoPE, SiLU/softmax/sigmoid, the gate multiply and residual adds, top-k/sort,
/// gather/scatter, losses.</para>
/// <para>Training FLOPs per token = 3 × forward (backward ≈ 2 × forward), for both counts.</para>
/// <para><b>Bidirectional attention</b> (<c>causal: false</c>, the image/audio encoders): every query sees every key of its set,
/// so the attention terms double — paper attn = 4·N_ctx·d; exact N² pairs for a full pass (N keys per token), k_r² for the
/// k_r selected tokens, and k_r·N with KV sharing. Everything else is unchanged.</para>
/// <para><b>KV cache.</b> <see cref="KvCacheRatio"/> = cached K/V entries relative to a vanilla model of the same unrolled
/// depth L: recursion-wise (P + B·Σ_r c_r)/L; shared (P + B)/L; 1 without routing or sharing. Over the recursion blocks alone
/// (<see cref="KvCacheRatioRecursions"/>) recursion-wise gives Σc_r/N_r = (N_r+1)/(2N_r) for the default capacities
/// (spec §3.3). Bytes per token = Σ over cached layer entries of 2 (K and V) · K · h · bytes-per-element.</para>
/// </summary>
public sealed record ModelAccounting
{
    // ---- layout
    public required string Sharing { get; init; }
    public required string Routing { get; init; }
    public required string KvCache { get; init; }
    public required string LayoutDescription { get; init; }
    /// <summary>[L] unrolled position → unique layer index.</summary>
    public required int[] UniqueIndexOf { get; init; }
    public required int UnrolledDepth { get; init; }
    public required int NumUnique { get; init; }
    public required int NumRecursion { get; init; }
    /// <summary>Layers per recursion block B (L for a vanilla model).</summary>
    public required int BlockSize { get; init; }
    /// <summary>Unique layers outside the recursions (2 for Middle-Cycle, 0 for Cycle; L for non-looped layouts).</summary>
    public required int UniqueOutsideRecursions { get; init; }
    /// <summary>Capacities used for accounting (all 1 without routing).</summary>
    public required double[] Capacities { get; init; }
    public required int Context { get; init; }
    /// <summary>Causal (decoder, default) or bidirectional (encoder) attention.</summary>
    public bool Causal { get; init; } = true;

    // ---- parameters
    public required long ParamsPerLayer { get; init; }
    /// <summary>Token embedding plus (when untied) the LM head.</summary>
    public required long EmbeddingParams { get; init; }
    public required long RouterParams { get; init; }
    /// <summary>Unique layers + final norm + routers.</summary>
    public required long NonEmbeddingParams { get; init; }
    public long TotalParams => EmbeddingParams + NonEmbeddingParams;

    // ---- FLOPs
    public required double FlopsPerTokenPaper { get; init; }
    public required double FlopsPerTokenExact { get; init; }
    /// <summary>The LM head's share of <see cref="FlopsPerTokenExact"/> (2·d·V); an encoder with a pooled head subtracts it.</summary>
    public double LmHeadFlopsPerToken { get; init; }
    public double TrainingFlopsPerTokenPaper => 3 * FlopsPerTokenPaper;
    public double TrainingFlopsPerTokenExact => 3 * FlopsPerTokenExact;

    // ---- KV cache
    public required double KvCacheRatio { get; init; }
    /// <summary>KV entries of the recursion blocks relative to B·N_r vanilla layers (1 when there are no recursions).</summary>
    public required double KvCacheRatioRecursions { get; init; }
    /// <summary>Cached layer entries per token (layer-equivalents; L for vanilla).</summary>
    public required double KvLayerEntriesPerToken { get; init; }
    public required double KvBytesPerTokenFp32 { get; init; }
    public required double KvBytesPerTokenBf16 { get; init; }

    /// <summary>Tokens one optimizer step consumes at the paper's batch (1024 × 2048).</summary>
    public const long PaperTokensPerStep = 1024L * 2048;

    /// <summary>Training steps a FLOPs budget buys: floor(flops / flopsPerToken / tokensPerStep) (spec §4.4).</summary>
    public static long StepsForBudget(double flops, double flopsPerToken, long tokensPerStep)
    {
        if (!(flopsPerToken > 0)) throw new ArgumentOutOfRangeException(nameof(flopsPerToken), "must be positive");
        if (tokensPerStep <= 0) throw new ArgumentOutOfRangeException(nameof(tokensPerStep), "must be positive");
        return (long)Math.Floor(flops / flopsPerToken / tokensPerStep);
    }

    /// <summary>Accounting for <paramref name="c"/> at a context of <paramref name="context"/> tokens (validates the config).</summary>
    public static ModelAccounting Compute(ModelConfig c, int context, bool causal = true)
    {
        ConfigValidator.Validate(c);
        if (context < 1) throw new ConfigException($"context: must be at least 1, got {context}");

        var mor = c.Recursion;
        var layout = RecursionLayout.From(c);
        var routing = mor.RoutingKind;
        var kvKind = mor.KvCacheKind;
        bool looped = layout.IsLooped;
        bool shared = kvKind == KvCacheKind.Shared;   // validator: only with looped layouts

        long d = c.HiddenSize, H = c.NumAttentionHeads, K = c.NumKeyValueHeads, h = c.HeadDim;
        long dff = c.IntermediateSize, V = c.VocabSize;
        int L = c.NumHiddenLayers;
        int Nr = layout.NumRecursion;
        int B = layout.BlockSize;
        int P = looped ? layout.Prelude.Length + layout.Coda.Length : L;   // layers outside the loop
        double[] cap = routing == RoutingKind.None ? Enumerable.Repeat(1.0, Nr).ToArray() : mor.EffectiveCapacity.ToArray();

        // ---------------- parameters
        long perLayer = d * H * h + 2 * d * K * h + H * h * d + 3 * d * dff + 2 * d;
        long routerOne = mor.RouterArchKind == RouterArch.Linear ? d : d * 2 * d + 2 * d;   // per expert-choice router
        long routers = routing switch
        {
            RoutingKind.Expert => Nr * routerOne * (mor.AuxLossKind == AuxLossKind.AuxRouter ? 2 : 1),
            RoutingKind.Token => mor.RouterArchKind == RouterArch.Linear ? d * Nr : d * 2 * d + 2 * d * Nr,
            _ => 0,
        };
        long embedding = V * d * (c.TieWordEmbeddings ? 1 : 2);
        long nonEmbedding = layout.NumUnique * perLayer + d + routers;

        // ---------------- FLOPs, paper (spec §4.4)
        double lin = 2.0 * (4 * d * d + 3 * d * dff);
        double attn = (causal ? 2.0 : 4.0) * context * d;
        double paper;
        if (!looped || (routing == RoutingKind.None && !shared))
            paper = L * (lin + attn);
        else
        {
            paper = P * (lin + attn);
            paper += B * (lin * cap[0] + attn * cap[0] * cap[0]);
            for (int r = 1; r < Nr; r++)
                paper += shared
                    ? B * ((lin - 4.0 * d * d) * cap[r] + attn * cap[r])
                    : B * (lin * cap[r] + attn * cap[r] * cap[r]);
        }

        // ---------------- FLOPs, exact (see the type's doc comment)
        double N = context;
        double linE = 2.0 * (d * H * h + 2 * d * K * h + H * h * d + 3 * d * dff);
        double kvProj = 2.0 * 2 * d * K * h;
        double pairFlops = 4.0 * H * h;                       // QKᵀ + AV per query–key pair
        double fullAttn = causal ? pairFlops * (N + 1) / 2 : pairFlops * N;   // per token: its causal prefix, or all N keys
        double exact = 2.0 * d * V;                           // LM head
        int uniqueOutside = looped ? P : L;
        exact += uniqueOutside * (linE + fullAttn);
        if (looped)
        {
            double[] k = new double[Nr];
            for (int r = 0; r < Nr; r++)
                k[r] = routing switch
                {
                    RoutingKind.Expert => Math.Max(1, Math.Floor(cap[r] * N)),
                    RoutingKind.Token => cap[r] * N,
                    _ => N,
                };
            for (int r = 0; r < Nr; r++)
            {
                double frac = k[r] / N;
                double perTokenLayer = r > 0 && shared
                    ? (linE - kvProj) * frac + pairFlops * k[r] * (causal ? (N + 1) / 2 : N) / N
                    : linE * frac + pairFlops * k[r] * (causal ? (k[r] + 1) / 2 : k[r]) / N;
                exact += B * perTokenLayer;
            }
            if (routing == RoutingKind.Expert)
            {
                double perCandidate = mor.RouterArchKind == RouterArch.Linear ? 2.0 * d : 2.0 * (d * 2 * d + 2 * d);
                if (mor.AuxLossKind == AuxLossKind.AuxRouter) perCandidate *= 2;
                for (int r = 0; r < Nr; r++)
                    exact += perCandidate * (r == 0 ? N : k[r - 1]) / N;
            }
            else if (routing == RoutingKind.Token)
            {
                exact += mor.RouterArchKind == RouterArch.Linear ? 2.0 * d * Nr : 2.0 * (d * 2 * d + 2 * d * Nr);
            }
        }

        // ---------------- KV cache
        double sumCap = cap.Sum();
        double kvEntries;
        double kvRecursions;
        if (!looped)
        {
            kvEntries = L;
            kvRecursions = 1;
        }
        else if (shared)
        {
            kvEntries = P + B;
            kvRecursions = 1.0 / Nr;
        }
        else
        {
            kvEntries = P + B * sumCap;
            kvRecursions = sumCap / Nr;
        }
        double bytesPerEntry = 2.0 * K * h;   // K and V

        return new ModelAccounting
        {
            Sharing = ConfigNames.ToName(layout.Sharing),
            Routing = ConfigNames.ToName(routing),
            KvCache = ConfigNames.ToName(kvKind),
            LayoutDescription = layout.Describe(),
            UniqueIndexOf = layout.UniqueIndexOf.ToArray(),
            UnrolledDepth = L,
            NumUnique = layout.NumUnique,
            NumRecursion = Nr,
            BlockSize = B,
            UniqueOutsideRecursions = uniqueOutside,
            Capacities = cap,
            Context = context,
            Causal = causal,
            ParamsPerLayer = perLayer,
            EmbeddingParams = embedding,
            RouterParams = routers,
            NonEmbeddingParams = nonEmbedding,
            FlopsPerTokenPaper = paper,
            FlopsPerTokenExact = exact,
            LmHeadFlopsPerToken = 2.0 * d * V,
            KvCacheRatio = kvEntries / L,
            KvCacheRatioRecursions = kvRecursions,
            KvLayerEntriesPerToken = kvEntries,
            KvBytesPerTokenFp32 = kvEntries * bytesPerEntry * 4,
            KvBytesPerTokenBf16 = kvEntries * bytesPerEntry * 2,
        };
    }

    /// <summary>The snake_case JSON form.</summary>
    public JsonObject ToJsonNode() => new()
    {
        ["context"] = Context,
        ["layout"] = new JsonObject
        {
            ["sharing"] = Sharing,
            ["routing"] = Routing,
            ["kv_cache"] = KvCache,
            ["description"] = LayoutDescription,
            ["unrolled_depth"] = UnrolledDepth,
            ["num_unique"] = NumUnique,
            ["num_recursion"] = NumRecursion,
            ["block_size"] = BlockSize,
            ["unique_outside_recursions"] = UniqueOutsideRecursions,
            ["capacities"] = new JsonArray(Capacities.Select(x => (JsonNode?)JsonValue.Create(x)).ToArray()),
            ["unique_index"] = new JsonArray(UniqueIndexOf.Select(x => (JsonNode?)JsonValue.Create(x)).ToArray()),
        },
        ["parameters"] = new JsonObject
        {
            ["total"] = TotalParams,
            ["embedding"] = EmbeddingParams,
            ["non_embedding"] = NonEmbeddingParams,
            ["per_layer"] = ParamsPerLayer,
            ["routers"] = RouterParams,
        },
        ["flops_per_token"] = new JsonObject
        {
            ["paper"] = FlopsPerTokenPaper,
            ["exact"] = FlopsPerTokenExact,
        },
        ["training_flops_per_token"] = new JsonObject
        {
            ["paper"] = TrainingFlopsPerTokenPaper,
            ["exact"] = TrainingFlopsPerTokenExact,
        },
        ["kv_cache_ratio"] = KvCacheRatio,
        ["kv_cache_ratio_recursions"] = KvCacheRatioRecursions,
        ["kv_bytes_per_token"] = new JsonObject
        {
            ["fp32"] = KvBytesPerTokenFp32,
            ["bf16"] = KvBytesPerTokenBf16,
        },
    };

    public string ToJson() => ToJsonNode().ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}

/// <summary>Entry points for <see cref="ModelAccounting"/> (same functions, shorter name).</summary>
public static class Accounting
{
    public static ModelAccounting Compute(ModelConfig c, int context, bool causal = true) => ModelAccounting.Compute(c, context, causal);

    /// <inheritdoc cref="ModelAccounting.StepsForBudget"/>
    public static long StepsForBudget(double flops, double flopsPerToken, long tokensPerStep) =>
        ModelAccounting.StepsForBudget(flops, flopsPerToken, tokensPerStep);
}
