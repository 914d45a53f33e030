namespace MoRSharp.Config;

/// <summary>
/// Named model configurations.
/// <para><b>Paper shapes</b> (spec §1.1, [P] Table 6; SmolLM v1 fields: vocab 49152, tied embeddings, rms_norm_eps 1e-5,
/// rope_theta 10000, context 2048, bos = eos = 0): bases <c>135m</c>, <c>360m</c>, <c>730m</c>, <c>1.7b</c>, each with
/// <c>smollm-{base}-vanilla</c>, <c>-recursive-nr{2,3,4}</c>, <c>-mor-expert-nr{2,3,4}</c>, <c>-mor-token-nr3</c>.
/// Recursive and MoR models use Middle-Cycle sharing (L = 1 + B·N_r + 1). Layouts (spec §1.2):</para>
/// <list type="bullet">
/// <item>135M (30 layers): N_r=2 → 1+14·2+1 = 30 ([P] Table 10); N_r=3 → 1+10·3+1 = 32 (isoFLOP layout, 2 layers added,
///   [P] App. D — not the 29-layer Table 10 ablation); N_r=4 → 1+7·4+1 = 30 (<i>derived</i>: 28 middle layers are already
///   divisible by 4, so nothing is added).</item>
/// <item>360M (32 layers): N_r=2 → 1+15·2+1 = 32; N_r=3 → 1+10·3+1 = 32; N_r=4 → 1+8·4+1 = 34 (2 layers added) — all [P] Table 3.</item>
/// <item>730M (26 layers): N_r=3 → 1+8·3+1 = 26 ([P] Tables 9, 11); N_r=2 → 1+12·2+1 = 26 and N_r=4 → 1+6·4+1 = 26 (<i>derived</i>).</item>
/// <item>1.7B (24 layers): N_r=3 → 1+8·3+1 = 26 (2 layers added, [P] Tables 7, 9); N_r=2 → 1+11·2+1 = 24 (<i>chosen</i>:
///   the paper does not state the layout, but 13 unique layers × 67.1M = 0.87B matches its Table 7 parameter count);
///   N_r=4 → 1+6·4+1 = 26 (<i>derived</i>).</item>
/// </list>
/// <para><i>Derived</i> = not stated in the paper; block size rounded up, B = ceil((L−2)/N_r) (the paper's "add layers" rule).</para>
/// <para><b>Defaults of the mor block</b> — the paper's released configs ([R], spec §2, §9.2): sharing middle_cycle; routing expert;
/// router linear; router_func sigmoid (expert) / softmax (token); alpha 0.1 (expert) / 1.0 (token); capacity c_r = (N_r − r + 1)/N_r;
/// aux_loss bce with coefficient 0.001; z-loss 0 (expert) / 1e-5 (token); balancing loss with coefficient 0.1 (token);
/// loss-free bias rate 0.001; kv_cache recursion_wise; gating weighted; router temperature 1. The MoR presets write the
/// router function, alpha and z-loss explicitly; capacity is left null (= the default schedule).</para>
/// <para><b>CPU presets</b>: <c>micro-*</c> (d 256, 4 heads, 4 KV heads, FFN 768, vocab 50257 = GPT-2 tokenizer, the project's
/// default, context 512, depth 8 = 1+2·3+1 with N_r = 3) and <c>tiny-*</c> for fast unit tests (d 64, 2 heads, 1 KV head so
/// GQA is exercised, FFN 128, vocab 512, context 128, depth 5 = 1+1·3+1 with N_r = 3). Variants: <c>vanilla</c>,
/// <c>recursive</c>, <c>mor-expert</c>, <c>mor-token</c>. <c>nano-*</c> (d 128, 2 heads, FFN 384, vocab 257 = bytes + end-of-text,
/// context 256, depth 1+2·3+1) is the built-in demo of <c>mor train</c> without data.</para>
/// Every call returns a fresh, validated instance.
/// </summary>
public static class Presets
{
    private sealed record Shape(int Hidden, int Heads, int KvHeads, int Ffn, int Layers);

    private static readonly (string Name, Shape Shape)[] Bases =
    [
        ("135m", new Shape(576, 9, 3, 1536, 30)),
        ("360m", new Shape(960, 15, 5, 2560, 32)),
        ("730m", new Shape(1536, 24, 8, 4096, 26)),
        ("1.7b", new Shape(2048, 32, 32, 8192, 24)),
    ];

    /// <summary>Unrolled Middle-Cycle depth for (base, N_r); see the class comment for the source of each entry.</summary>
    private static int MiddleCycleDepth(string baseName, int baseLayers, int nr) => (baseName, nr) switch
    {
        ("135m", 2) => 30,   // [P] Table 10: 1+14·2+1
        ("135m", 3) => 32,   // [P] App. D / Table 9: 1+10·3+1 (2 layers added)
        ("360m", 2) => 32,   // [P] Table 3: 1+15·2+1
        ("360m", 3) => 32,   // [P] Table 3: 1+10·3+1
        ("360m", 4) => 34,   // [P] Table 3, [R] num_hidden_layers: 34: 1+8·4+1
        ("730m", 3) => 26,   // [P] Tables 9, 11: 1+8·3+1
        ("1.7b", 2) => 24,   // chosen: 1+11·2+1 (layout not stated; 13 unique layers reproduce 0.87B)
        ("1.7b", 3) => 26,   // [P] Tables 7, 9: 1+8·3+1 (2 layers added)
        _ => 2 + nr * (int)Math.Ceiling((baseLayers - 2) / (double)nr),   // derived: round B up
    };

    private static readonly Dictionary<string, Func<ModelConfig>> Table = Build();

    /// <summary>All preset names, in a stable order.</summary>
    public static IReadOnlyList<string> Names { get; } = Table.Keys.ToList();

    /// <summary>A fresh copy of the named preset; throws <see cref="ConfigException"/> listing the valid names.</summary>
    public static ModelConfig Get(string name)
    {
        if (name is not null && Table.TryGetValue(name, out var make))
        {
            var c = make();
            ConfigValidator.Validate(c);
            return c;
        }
        string? guess = name is null ? null : ConfigJson.Suggest(name, Names);
        throw new ConfigException(
            $"preset: unknown preset '{name}'" + (guess is null ? "" : $" (did you mean '{guess}'?)") +
            $"; valid presets: {string.Join(", ", Names)}");
    }

    public static bool Exists(string name) => Table.ContainsKey(name);

    private static Dictionary<string, Func<ModelConfig>> Build()
    {
        var t = new Dictionary<string, Func<ModelConfig>>(StringComparer.Ordinal);
        foreach (var (name, s) in Bases)
        {
            string p = $"smollm-{name}";
            t[$"{p}-vanilla"] = () => SmolLM(s, s.Layers, null);
            foreach (int nr in new[] { 2, 3, 4 })
            {
                int L = MiddleCycleDepth(name, s.Layers, nr);
                t[$"{p}-recursive-nr{nr}"] = () => SmolLM(s, L, Recursive(nr));
            }
            foreach (int nr in new[] { 2, 3, 4 })
            {
                int L = MiddleCycleDepth(name, s.Layers, nr);
                t[$"{p}-mor-expert-nr{nr}"] = () => SmolLM(s, L, Expert(nr));
            }
            int L3 = MiddleCycleDepth(name, s.Layers, 3);
            t[$"{p}-mor-token-nr3"] = () => SmolLM(s, L3, Token(3));
        }

        // micro (CPU training) and tiny (unit tests): N_r = 3, Middle-Cycle
        t["micro-vanilla"] = () => Micro(null);
        t["micro-recursive"] = () => Micro(Recursive(3));
        t["micro-mor-expert"] = () => Micro(Expert(3));
        t["micro-mor-token"] = () => Micro(Token(3));
        t["nano-vanilla"] = () => Nano(null);
        t["nano-recursive"] = () => Nano(Recursive(3));
        t["nano-mor-expert"] = () => Nano(Expert(3));
        t["nano-mor-token"] = () => Nano(Token(3));
        t["tiny-vanilla"] = () => Tiny(null);
        t["tiny-recursive"] = () => Tiny(Recursive(3));
        t["tiny-mor-expert"] = () => Tiny(Expert(3));
        t["tiny-mor-token"] = () => Tiny(Token(3));
        return t;
    }

    private static ModelConfig SmolLM(Shape s, int layers, MoRConfig? mor) => new()
    {
        HiddenSize = s.Hidden,
        IntermediateSize = s.Ffn,
        NumHiddenLayers = layers,
        NumAttentionHeads = s.Heads,
        NumKeyValueHeads = s.KvHeads,
        VocabSize = 49152,
        MaxPositionEmbeddings = 2048,
        RmsNormEps = 1e-5,
        RopeTheta = 10000.0,
        TieWordEmbeddings = true,
        InitializerRange = 0.02,
        BosTokenId = 0,
        EosTokenId = 0,
        MoR = mor,
    };

    private static ModelConfig Micro(MoRConfig? mor) =>
        Cpu(hidden: 256, ffn: 768, layers: 8 /* 1 + 2·3 + 1 */, heads: 4, kvHeads: 4, vocab: 50257 /* GPT-2 */, context: 512, eos: 50256 /* <|endoftext|> */, mor);

    /// <summary>The built-in demo (`mor train` with no data): byte-level vocabulary, small enough to learn something in a minute on 2 cores.</summary>
    private static ModelConfig Nano(MoRConfig? mor) =>
        Cpu(hidden: 128, ffn: 384, layers: 8 /* 1 + 2·3 + 1 */, heads: 2, kvHeads: 2, vocab: 257 /* bytes + end-of-text */, context: 256, eos: 256, mor);

    private static ModelConfig Tiny(MoRConfig? mor) =>
        Cpu(hidden: 64, ffn: 128, layers: 5 /* 1 + 1·3 + 1 */, heads: 2, kvHeads: 1 /* GQA */, vocab: 512, context: 128, eos: null, mor);

    /// <summary>A CPU-sized Llama shape with the SmolLM conventions (eps 1e-5, θ 10000, tied embeddings, init 0.02).</summary>
    private static ModelConfig Cpu(int hidden, int ffn, int layers, int heads, int kvHeads, int vocab, int context, int? eos, MoRConfig? mor) => new()
    {
        HiddenSize = hidden,
        IntermediateSize = ffn,
        NumHiddenLayers = layers,
        NumAttentionHeads = heads,
        NumKeyValueHeads = kvHeads,
        VocabSize = vocab,
        MaxPositionEmbeddings = context,
        RmsNormEps = 1e-5,
        RopeTheta = 10000.0,
        TieWordEmbeddings = true,
        InitializerRange = 0.02,
        BosTokenId = eos,
        EosTokenId = eos,
        MoR = mor,
    };

    private static MoRConfig Recursive(int nr) => new()
    {
        NumRecursion = nr,
        Sharing = "middle_cycle",
        Routing = "none",
    };

    private static MoRConfig Expert(int nr) => new()
    {
        NumRecursion = nr,
        Sharing = "middle_cycle",
        Routing = "expert",
        RouterArch = "linear",
        RouterFunc = "sigmoid",
        Alpha = 0.1,
        AuxLoss = "bce",
        AuxCoeff = 0.001,
        ZLossCoeff = 0.0,
        KvCache = "recursion_wise",
    };

    private static MoRConfig Token(int nr) => new()
    {
        NumRecursion = nr,
        Sharing = "middle_cycle",
        Routing = "token",
        RouterArch = "linear",
        RouterFunc = "softmax",
        Alpha = 1.0,
        ZLossCoeff = 1e-5,
        Balancing = "loss",
        BalancingCoeff = 0.1,
        BiasUpdateRate = 0.001,
        KvCache = "recursion_wise",
    };
}
