using MoRSharp.Caching;
using MoRSharp.Config;
using MoRSharp.Kernels;
using MoRSharp.Routing;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Model;

/// <summary>Logits and what routing did in one forward pass.</summary>
public sealed record ModelOutput(Tensor Logits, RoutingStats Routing)   // Logits [B, T, V]
{
    /// <summary>What training minimises: next-token cross-entropy plus the config-weighted routing losses.</summary>
    public Tensor TrainingLoss(Tensor ids)
    {
        var lm = MoRForCausalLM.NextTokenLoss(Logits, ids);
        return Routing.WeightedLoss is { } extra ? lm + extra.to_type(lm.dtype) : lm;
    }
}

/// <summary>
/// The decoder stack under the HF key prefix <c>model.</c>: embedding → prelude (unique first layer) →
/// N_r recursions of the shared block (plain, expert-choice or token-choice) → coda (unique last layer) → final norm.
/// Every unique layer is registered once as <c>model.layers.{u}</c>; recursions reference it, so tying holds by construction.
/// </summary>
public sealed class MoRModel : nn.Module
{
    private readonly Embedding embed_tokens;                          // [V, d]
    private readonly ModuleList<DecoderLayer> layers;                 // unique layers
    private readonly RmsNorm norm;
    private readonly ModuleList<nn.Module<Tensor, Tensor>>? routers;     // expert-choice: one per recursion, [1, d] each
    private readonly ModuleList<nn.Module<Tensor, Tensor>>? aux_routers; // expert-choice aux_router: detached predictors
    private readonly nn.Module<Tensor, Tensor>? router;                  // token-choice: [N_r, d]
    private readonly Tensor? router_bias;                              // token-choice loss-free bias [N_r] (buffer, saved)

    private readonly ModelConfig config;
    private readonly RecursionLayout layout;
    private readonly RotaryEmbedding rope;
    private readonly ExpertChoiceRouting? expert;
    private readonly TokenChoiceRouting? token;
    private readonly bool kvShared;

    public MoRModel(ModelConfig config) : base(nameof(MoRModel))
    {
        this.config = config;
        layout = RecursionLayout.From(config);
        var mor = config.Recursion;
        int d = config.HiddenSize;
        embed_tokens = nn.Embedding(config.VocabSize, d);
        layers = new ModuleList<DecoderLayer>(Enumerable.Range(0, layout.NumUnique)
            .Select(_ => new DecoderLayer(d, config.IntermediateSize, config.NumAttentionHeads, config.NumKeyValueHeads, config.RmsNormEps)).ToArray());
        norm = new RmsNorm(d, config.RmsNormEps);
        switch (mor.RoutingKind)
        {
            case RoutingKind.Expert:
                if (!layout.IsLooped) throw new ConfigException("mor.routing: expert-choice needs sharing cycle or middle_cycle");
                routers = new ModuleList<nn.Module<Tensor, Tensor>>(Enumerable.Range(0, layout.NumRecursion)
                    .Select(_ => Routers.Create(mor.RouterArchKind, d, 1)).ToArray());
                if (mor.AuxLossKind == AuxLossKind.AuxRouter)
                    aux_routers = new ModuleList<nn.Module<Tensor, Tensor>>(Enumerable.Range(0, layout.NumRecursion)
                        .Select(_ => Routers.Create(mor.RouterArchKind, d, 1)).ToArray());
                break;
            case RoutingKind.Token:
                if (!layout.IsLooped) throw new ConfigException("mor.routing: token-choice needs sharing cycle or middle_cycle");
                router = Routers.Create(mor.RouterArchKind, d, layout.NumRecursion);
                router_bias = torch.zeros(layout.NumRecursion);
                break;
        }
        RegisterComponents();
        rope = new RotaryEmbedding(config.HeadDim, config.MaxPositionEmbeddings, config.RopeTheta);
        if (routers is not null) expert = new ExpertChoiceRouting(mor, routers, aux_routers);
        if (router is not null) token = new TokenChoiceRouting(mor, router, router_bias!);
        kvShared = mor.KvCacheKind == KvCacheKind.Shared && layout.IsLooped;
        if (kvShared && mor.RoutingKind == RoutingKind.Expert && mor.EffectiveCapacity[0] < 1.0)
            throw new ConfigException("mor.kv_cache: 'shared' needs capacity[0] = 1 (recursion 1 must write keys/values for every token)");
    }

    public Embedding EmbedTokens => embed_tokens;

    /// <summary>The type the residual stream, the norms and the KV cache compute in: the final norm's type. Usually every
    /// weight has it; after <see cref="MoRForCausalLM.StoreWeightsAs"/> the projection and embedding weights are narrower.</summary>
    public ScalarType ComputeType => norm.Weight.dtype;

    /// <summary>Token embeddings [..., d] in <see cref="ComputeType"/> (a widened copy when the table is stored narrower).</summary>
    public Tensor Embed(Tensor ids)
    {
        var h = embed_tokens.forward(ids);
        if (h.dtype == ComputeType) return h;
        using (h) return h.to_type(ComputeType);
    }

    public IReadOnlyList<DecoderLayer> Layers => layers.ToList();
    public RecursionLayout Layout => layout;
    public RotaryEmbedding Rope => rope;
    public Tensor? RouterBias => router_bias;
    public RmsNorm Norm => norm;
    /// <summary>The expert-choice routing (null unless <c>mor.routing</c> is expert); the batching engine routes with it.</summary>
    public ExpertChoiceRouting? ExpertRouting => expert;
    /// <summary>The token-choice routing (null unless <c>mor.routing</c> is token).</summary>
    public TokenChoiceRouting? TokenRouting => token;

    /// <summary>
    /// ids [B, T], positions [B, T] (absolute; default 0..T−1) → final hidden states [B, T, d] and routing stats.
    /// With a <paramref name="cache"/>, the T tokens continue the sequences in cache rows <paramref name="rows"/> (default 0..B−1):
    /// their positions follow the tokens already cached, every attention call writes its keys/values to its slot (only the
    /// tokens that reach a recursion write that recursion's slots) and attends to the cached prefix. Decoding token by token
    /// this way gives the same logits and depths as one full forward with <see cref="RoutingMode.Causal"/>.
    /// With <paramref name="normalize"/> false the final RMSNorm is left to the caller (<see cref="MoRForCausalLM.NormHead"/>
    /// fuses it into the head; a prefill that only fills the cache needs none).
    /// </summary>
    public (Tensor hidden, RoutingStats stats) Forward(Tensor ids, RoutingMode mode, Tensor? positions = null,
        KvCache? cache = null, IReadOnlyList<long>? rows = null, bool normalize = true)
    {
        long b = ids.shape[0], t = ids.shape[1];
        if (cache is not null)
        {
            if (positions is not null) throw new ArgumentException("positions come from the KV cache when one is given");
            if (mode == RoutingMode.TopK && config.Recursion.RoutingKind == RoutingKind.Expert)
                throw new ArgumentException("top-k routing looks at the whole sequence; decoding with a KV cache needs RoutingMode.Causal");
            rows ??= Enumerable.Range(0, (int)b).Select(i => (long)i).ToArray();
            if (rows.Count != b) throw new ArgumentException($"{rows.Count} cache rows for a batch of {b}");
            var start = rows.Select(r => cache.Position((int)r)).ToArray();
            positions = torch.tensor(start).unsqueeze(1) + torch.arange(t, dtype: ScalarType.Int64).unsqueeze(0);   // [B, T]
            if (start.Max() + t > cache.MaxLength)
                throw new ArgumentException($"{start.Max() + t} tokens exceed the KV cache length {cache.MaxLength}");
        }
        else if (t > config.MaxPositionEmbeddings)
            throw new ArgumentException($"sequence length {t} exceeds max_position_embeddings {config.MaxPositionEmbeddings}");
        bool defaultPositions = positions is null;
        positions ??= torch.arange(t, dtype: ScalarType.Int64).unsqueeze(0).expand(b, t);
        var h = Embed(ids);                                                         // [B, T, d]
        var (cos, sin) = rope.At(positions, h.dtype);                              // [B, 1, T, hd]
        var allCounts = Enumerable.Repeat(t, (int)b).ToArray();
        var slots = cache?.Layout;
        AttentionInputs Full(int slot) => new()
        {
            Cos = cos, Sin = sin,
            Cache = cache is null ? null : new KvCacheAccess(cache, slot, rows!, allCounts, true, null),
        };

        for (int i = 0; i < layout.Prelude.Length; i++) h = layers[layout.Prelude[i]].Forward(h, Full(slots?.PreludeSlot(i) ?? -1)).hidden;

        RoutingStats stats = RoutingStats.None(b * t);
        if (layout.Recursions.Length > 0)
        {
            // Keys/values of recursion 1, per block layer, when recursions share them (spec §3.2); the cache does this itself.
            var sharedKv = kvShared && cache is null ? new (Tensor k, Tensor v)[layout.BlockSize] : null;
            Tensor Block(int r, Tensor x, Tensor? idx, Tensor? valid)                 // x [B, k, d], idx/valid [B, k] or null = all
            {
                Tensor cosR = cos, sinR = sin, pos = positions;
                if (idx is not null)
                {
                    pos = defaultPositions && cache is null ? idx : positions.gather(1, idx);   // absolute positions [B, k]
                    (cosR, sinR) = rope.At(pos, x.dtype);
                }
                long[] counts = cache is null ? allCounts
                    : valid is null ? Enumerable.Repeat(x.shape[1], (int)b).ToArray()
                    : valid.sum(1).data<long>().ToArray();
                var unique = layout.Recursions[r];
                for (int j = 0; j < unique.Length; j++)
                {
                    var inputs = new AttentionInputs { Cos = cosR, Sin = sinR };
                    if (cache is not null)
                    {
                        var (slot, writes) = slots!.RecursionSlot(r, j);
                        inputs.Cache = new KvCacheAccess(cache, slot, rows!, counts, writes, writes ? null : pos);
                    }
                    else if (sharedKv is not null && r > 0)
                    {
                        inputs.SharedKv = sharedKv[j];
                        // queries (a subset, in position order) see recursion-1 keys at positions ≤ their own
                        if (idx is not null) inputs.Mask = positions.unsqueeze(1).unsqueeze(1).le(pos.unsqueeze(1).unsqueeze(-1));   // [B, 1, k, T]
                    }
                    else if (sharedKv is not null) inputs.CaptureKv = true;
                    var (y, key, value) = layers[unique[j]].Forward(x, inputs);
                    if (sharedKv is not null && r == 0) sharedKv[j] = (key!, value!);
                    x = y;
                }
                return x;
            }

            switch (config.Recursion.RoutingKind)
            {
                case RoutingKind.Expert: (h, stats) = expert!.Forward(h, Block, mode); break;
                case RoutingKind.Token: (h, stats) = token!.Forward(h, Block); break;
                default:
                    for (int r = 0; r < layout.NumRecursion; r++) h = Block(r, h, null, null);
                    stats = new RoutingStats
                    {
                        TotalTokens = b * t,
                        TokensPerRecursion = Enumerable.Repeat(b * t, layout.NumRecursion).ToArray(),
                    };
                    break;
            }
        }

        for (int i = 0; i < layout.Coda.Length; i++) h = layers[layout.Coda[i]].Forward(h, Full(slots?.CodaSlot(i) ?? -1)).hidden;
        cache?.Advance(rows!, t);
        return (normalize ? norm.forward(h) : h, stats);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) rope.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>
/// A Llama causal LM with optional Mixture-of-Recursions. Parameter names equal the Hugging Face keys
/// (<c>model.embed_tokens.weight</c>, <c>model.layers.{u}.self_attn.q_proj.weight</c>, …, <c>lm_head.weight</c> when untied);
/// MoR adds <c>model.routers.{r}.*</c> (expert-choice) or <c>model.router.*</c> + <c>model.router_bias</c> (token-choice).
/// </summary>
public sealed class MoRForCausalLM : nn.Module
{
    private readonly MoRModel model;
    private readonly Linear? lm_head;    // null when tied to the embedding

    public ModelConfig Config { get; }

    public MoRForCausalLM(ModelConfig config, long seed = 0) : base(Init(config))
    {
        Config = config;
        model = new MoRModel(config);
        if (!config.TieWordEmbeddings) lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
        InitWeights(seed);
    }

    public MoRModel Model => model;
    public RecursionLayout Layout => model.Layout;

    /// <summary>Runs before the native module is created: a clear message for a bad config or a libtorch that will not load.</summary>
    private static string Init(ModelConfig config)
    {
        ConfigValidator.Validate(config);
        Native.TorchRuntime.Initialize();
        return nameof(MoRForCausalLM);
    }

    /// <summary>Official init: every Linear/Embedding/router weight ~ N(0, initializer_range), norms = 1. Seeded, independent of global RNG.</summary>
    private void InitWeights(long seed)
    {
        using var gen = new Generator((ulong)seed);
        using var _ = torch.no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith("layernorm.weight") || name == "model.norm.weight") p.fill_(1.0);
            else p.normal_(0, Config.InitializerRange, gen);
        }
    }

    /// <summary>
    /// ids [B, T] → logits [B, T, V]. <paramref name="mode"/> defaults to top-k selection in training mode and the
    /// causal rule in eval mode (evaluation and generation must never see the future).
    /// </summary>
    public ModelOutput Forward(Tensor ids, RoutingMode? mode = null, Tensor? positions = null)
    {
        var (h, stats) = model.Forward(ids, mode ?? (training ? RoutingMode.TopK : RoutingMode.Causal), positions);
        return new ModelOutput(Head(h), stats);
    }

    /// <summary>
    /// ids [B, T] continuing the sequences in KV-cache rows <paramref name="rows"/> → logits [B, T, V] (causal routing).
    /// Prefill is one call with the prompt; decoding is one call per new token.
    /// </summary>
    public ModelOutput Forward(Tensor ids, KvCache cache, IReadOnlyList<long>? rows = null)
    {
        var (h, stats) = model.Forward(ids, RoutingMode.Causal, null, cache, rows, normalize: false);
        return new ModelOutput(NormHead(h), stats);                                // the same head call as the batching engine's
    }

    /// <summary>A KV cache sized for this model: <paramref name="rows"/> sequences of up to <paramref name="maxLength"/> tokens.</summary>
    public KvCache CreateCache(int rows, int maxLength) =>
        new(Config, rows, maxLength, model.ComputeType);

    /// <summary>Final hidden states [..., d] → logits [..., V] (tied to the embedding unless the config unties them).</summary>
    /// <remarks>Under no-grad with at most 64 rows (decoding; up to 1,024 in the batching engine's held stages) the product
    /// runs in <see cref="SmallGemm"/> where the CPU has AVX2/FMA (1.35× the swapped product for one row, `projection-paths`). Otherwise, under no-grad (evaluation, generation)
    /// it runs as <see cref="InferenceLinear.Swapped"/> for any number of rows: for a vocabulary-sized weight it is 1.5–4× faster than <c>linear</c> for 1–32 rows (`projection-paths`) and 1.6× for 2,048. With
    /// autograd <c>linear</c> stays: a whole training step (forward + backward) measured 13% faster with it. The swapped
    /// product's transposed result is copied to row-major logits (a small cost next to the product): every consumer reads
    /// logits by rows (softmax over the vocabulary, a sampler per sequence), and reading a row of the transposed view
    /// touches one cache line per element.</remarks>
    public Tensor Head(Tensor h)
    {
        Tensor weight = lm_head?.weight ?? model.EmbedTokens.weight!;
        if (SmallGemm.Accepts(h, weight)) return SmallGemm.Matmul(h, weight);
        using var widened = weight.dtype == h.dtype ? null : weight.to_type(h.dtype);   // stored narrower (StoreWeightsAs)
        weight = widened ?? weight;
        if (torch.is_grad_enabled()) return nn.functional.linear(h, weight);
        using var swapped = InferenceLinear.Swapped(h, weight);
        return swapped.contiguous();
    }

    /// <summary>
    /// Weight-only bfloat16 for decoding: the attention and MLP projection weights and the embedding (the LM head when
    /// untied) are stored as bfloat16, half their float32 bytes; the norms, routers, activations, sums and KV cache stay
    /// float32. Decoding reads every weight once per token and is limited by memory, so this is what llama.cpp's bf16 and
    /// f16 files do. The decode kernels (<see cref="SmallGemm"/>) widen the weights exactly as they load them, so the
    /// model computes what a float32 model with these rounded weights computes; paths without the kernels (long prompts,
    /// other CPUs) widen a weight per call. For inference: training needs float32 weights. Only bfloat16 is supported;
    /// <see cref="ScalarType.Float32"/> restores float32 weights.
    /// </summary>
    public void StoreWeightsAs(ScalarType type)
    {
        if (type is not (ScalarType.BFloat16 or ScalarType.Float32))
            throw new ArgumentException($"weights can be stored as bfloat16 for decoding (or float32, the default), not {type}");
        if (model.ComputeType != ScalarType.Float32)
            throw new InvalidOperationException($"weight-only bfloat16 needs a float32 model, not {model.ComputeType}");
        using var _ = torch.no_grad();
        foreach (var (name, module) in named_modules())
            if (IsStoredNarrow(name)) module.to(type);   // float32: widens narrowed weights back (exactly); else nothing to do
    }

    /// <summary>The projection and embedding weights' type (float32, or bfloat16 after <see cref="StoreWeightsAs"/>).</summary>
    public ScalarType WeightType => model.EmbedTokens.weight!.dtype;

    // model.embed_tokens, lm_head, and model.layers.{u}.self_attn.{q,k,v,o}_proj / .mlp.{gate,up,down}_proj; not the routers.
    private static bool IsStoredNarrow(string name) =>
        name is "model.embed_tokens" or "lm_head"
        || (name.StartsWith("model.layers.", StringComparison.Ordinal) && name.EndsWith("_proj", StringComparison.Ordinal));

    /// <summary>Head(norm(h)) for the un-normalised residual stream h [..., d]: under no-grad with the decode kernels the
    /// final RMSNorm is the product's prologue (one call instead of the norm's tensor operations and the product).</summary>
    public Tensor NormHead(Tensor h)
    {
        var weight = lm_head?.weight ?? model.EmbedTokens.weight!;
        var norm = model.Norm;
        if (!torch.is_grad_enabled() && norm.Weight.dtype == ScalarType.Float32 && SmallGemm.Accepts(h, weight))
            return SmallGemm.Project(h, norm.Weight, norm.Eps, weight)[0];
        return Head(norm.forward(h));
    }

    /// <summary>Mean next-token cross-entropy: logits[:, t] predicts ids[:, t+1].</summary>
    public static Tensor NextTokenLoss(Tensor logits, Tensor ids)
    {
        long v = logits.shape[^1];
        var pred = logits[.., ..^1, ..].reshape(-1, v);
        var target = ids[.., 1..].reshape(-1);
        return nn.functional.cross_entropy(pred.to_type(ScalarType.Float32), target);
    }
}
