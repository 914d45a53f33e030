using MoRSharp.Config;
using MoRSharp.Data;
using MoRSharp.Model;
using static TorchSharp.torch;

namespace MoRSharp.Training;

/// <summary>How the shared block of a converted model is filled from the pretrained layers (spec §7, [RRT], [R]).</summary>
public enum InitMethod { Stepwise, Average, Lower, Upper, Random }

/// <summary>What <c>mor convert</c> makes of a vanilla model.</summary>
public sealed record ConversionOptions
{
    public SharingStrategy Sharing { get; init; } = SharingStrategy.MiddleCycle;
    public int NumRecursion { get; init; } = 3;
    public InitMethod Init { get; init; } = InitMethod.Stepwise;
    /// <summary>none (recursive model), expert or token; routers are freshly initialised.</summary>
    public RoutingKind Routing { get; init; } = RoutingKind.None;
    /// <summary>c_r per recursion (routed models); null = the default schedule.</summary>
    public double[]? Capacity { get; init; }
    /// <summary>Seeds the routers' initialisation and the Random init's layer choice.</summary>
    public long Seed { get; init; }
}

/// <summary>
/// Which pretrained layers fill each unique layer of the converted model. <see cref="Kept"/> is the source stack the rules
/// apply to: all source layers, or — when L (or L − 2 for Middle-*) is not divisible by N_r — B·N_r (+ 2) of them picked
/// evenly (round(linspace)), as the official code does ([R] <c>sharing_strategy/llama.py</c>; the paper instead adds layers).
/// </summary>
public sealed record ConversionPlan(int SourceLayers, int[] Kept, RecursionLayout Layout, int[][] SourcesOfUnique, InitMethod Init)
{
    /// <summary>"u0 ← 0 | u1 ← 1 3 5 (mean) | …" for logs.</summary>
    public string Describe() => string.Join(" | ", SourcesOfUnique.Select((s, u) =>
        $"u{u} ← {string.Join(" ", s)}{(s.Length > 1 ? " (mean)" : "")}"));
}

/// <summary>
/// Converts a pretrained vanilla Llama into a recursive or MoR model (spec §7; the rules of the official code
/// <c>model/sharing_strategy/llama.py</c>). With L source layers and block size B (Cycle/Sequence: L/N_r; Middle-*: (L−2)/N_r):
/// <list type="bullet">
/// <item>Middle-Cycle / Middle-Sequence copy the first and last layer unchanged (unique layers 0 and B+1); the rules below fill
/// the shared positions i = 0..B−1 from the middle layers 1..L−2 (Cycle/Sequence: from all layers 0..L−1).</item>
/// <item><b>stepwise</b>: position i ← layer round(linspace(first, last, B))[i] (both ends included; banker's rounding like Python's round).</item>
/// <item><b>average</b>: position i ← element-wise mean of the layers that sit at the positions tied to i in the unrolled model
/// (Cycle: i, i+B, i+2B, …; Sequence: the i-th run of N_r consecutive layers; +1 for Middle-*).</item>
/// <item><b>lower</b>: the first B layers (Middle: 1..B); <b>upper</b>: the last B (Middle: L−1−B..L−2); <b>random</b>: a sorted, seeded random subset of B.</item>
/// <item>RMSNorm weights follow the same rule as the layer they belong to (averaged for average). Embedding, final norm and
/// LM head are copied. Routers keep their fresh N(0, initializer_range) initialisation (seeded).</item>
/// </list>
/// The converted model's <c>num_hidden_layers</c> is the unrolled depth B·N_r (+2), equal to L when divisible.
/// </summary>
public static class MoRConversion
{
    /// <summary>The layer suffixes of one decoder layer (HF keys under <c>model.layers.{i}.</c>).</summary>
    public static readonly string[] LayerKeys =
    [
        "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
        "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
        "input_layernorm.weight", "post_attention_layernorm.weight",
    ];

    public static InitMethod ParseInit(string name) => ConfigNames.Parse<InitMethod>(name, "--init");

    /// <summary>The source-layer assignment for a vanilla model of <paramref name="sourceLayers"/> layers.</summary>
    public static ConversionPlan Plan(int sourceLayers, ConversionOptions o)
    {
        if (o.Sharing == SharingStrategy.None) throw new ConfigException("--sharing: converting needs a sharing strategy (cycle, sequence, middle_cycle or middle_sequence)");
        if (o.NumRecursion < 1) throw new ConfigException($"--recursions: must be at least 1, got {o.NumRecursion}");
        bool middle = o.Sharing is SharingStrategy.MiddleCycle or SharingStrategy.MiddleSequence;
        int L = sourceLayers;
        int B = (middle ? L - 2 : L) / o.NumRecursion;
        if (B < 1)
            throw new ConfigException($"--recursions: {L} source layers are too few for {o.NumRecursion} recursions with {ConfigNames.ToName(o.Sharing)} sharing (the block would be empty)");

        // The stack the rules apply to (resampled when not divisible, as the official code does).
        int Lp = B * o.NumRecursion + (middle ? 2 : 0);
        int[] kept = Lp == L ? Enumerable.Range(0, L).ToArray()
            : middle ? [0, .. Linspace(1, L - 2, B * o.NumRecursion), L - 1]
            : Linspace(0, L - 1, B * o.NumRecursion);
        var layout = new RecursionLayout(o.Sharing, Lp, o.NumRecursion);
        int off = middle ? 1 : 0;
        int first = middle ? 1 : 0, last = middle ? Lp - 2 : Lp - 1;   // the stack positions the shared block is chosen from

        int[][] positions = new int[layout.NumUnique][];              // in stack positions, mapped through kept[] below
        if (middle)
        {
            positions[0] = [0];
            positions[B + 1] = [Lp - 1];
        }
        int[] chosen = o.Init switch
        {
            InitMethod.Stepwise => Linspace(first, last, B),
            InitMethod.Lower => Enumerable.Range(first, B).ToArray(),
            InitMethod.Upper => Enumerable.Range(last - B + 1, B).ToArray(),
            InitMethod.Random => RandomSubset(first, last, B, o.Seed),
            _ => [],
        };
        for (int i = 0; i < B; i++)
        {
            int u = off + i;
            positions[u] = o.Init == InitMethod.Average
                ? Enumerable.Range(0, Lp).Where(l => layout.UniqueIndexOf[l] == u).ToArray()   // the layers tied to position i
                : [chosen[i]];
        }
        var sources = positions.Select(p => p.Select(j => kept[j]).ToArray()).ToArray();
        return new ConversionPlan(L, kept, layout, sources, o.Init);
    }

    /// <summary>The converted model's config: the source's with the unrolled depth and the "mor" block.</summary>
    public static ModelConfig TargetConfig(ModelConfig source, ConversionOptions o, ConversionPlan plan)
    {
        var c = source.Clone();
        c.NumHiddenLayers = plan.Layout.UnrolledDepth;
        c.MoR = new MoRConfig
        {
            NumRecursion = o.NumRecursion,
            Sharing = ConfigNames.ToName(o.Sharing),
            Routing = ConfigNames.ToName(o.Routing),
            Capacity = o.Capacity,
        };
        ConfigValidator.Validate(c);
        return c;
    }

    /// <summary>Builds the converted model from a vanilla one (weights copied or averaged per <see cref="Plan"/>).</summary>
    public static (MoRForCausalLM model, ConversionPlan plan) Convert(MoRForCausalLM source, ConversionOptions o)
    {
        var sc = source.Config;
        if (sc.MoR is { } m && m.SharingKind != SharingStrategy.None)
            throw new ConfigException($"the source model is already recursive (mor.sharing {m.Sharing}); convert a vanilla model");
        var plan = Plan(sc.NumHiddenLayers, o);
        var config = TargetConfig(sc, o, plan);
        var target = new MoRForCausalLM(config, o.Seed);               // routers: fresh seeded init
        try
        {
            var src = source.state_dict();
            var dst = target.state_dict();
            using var _ = no_grad();
            foreach (var (name, t) in dst)
            {
                if (!name.StartsWith("model.layers.", StringComparison.Ordinal))
                {
                    if (src.TryGetValue(name, out var s)) t.copy_(s);   // embedding, final norm, lm_head (routers are not in the source)
                    continue;
                }
                string rest = name["model.layers.".Length..];
                int dot = rest.IndexOf('.');
                int u = int.Parse(rest[..dot], System.Globalization.CultureInfo.InvariantCulture);
                string key = rest[(dot + 1)..];
                var from = plan.SourcesOfUnique[u];
                using var scope = NewDisposeScope();
                var sum = src[$"model.layers.{from[0]}.{key}"].to_type(ScalarType.Float32).clone();
                for (int k = 1; k < from.Length; k++) sum.add_(src[$"model.layers.{from[k]}.{key}"].to_type(ScalarType.Float32));
                if (from.Length > 1) sum.div_(from.Length);
                t.copy_(sum);
            }
        }
        catch
        {
            target.Dispose();
            throw;
        }
        return (target, plan);
    }

    /// <summary>numpy's round(linspace(a, b, n)) with Python's round-half-to-even.</summary>
    public static int[] Linspace(int a, int b, int n)
    {
        if (n == 1) return [a];
        double step = (double)(b - a) / (n - 1);
        return Enumerable.Range(0, n).Select(k => k == n - 1 ? b : (int)Math.Round(k * step + a, MidpointRounding.ToEven)).ToArray();
    }

    private static int[] RandomSubset(int first, int last, int count, long seed)
    {
        var pool = Enumerable.Range(first, last - first + 1).ToList();
        var rng = new SplitMix64((ulong)seed ^ 0x6D6F722D696E6974UL);    // "mor-init"
        for (int i = pool.Count - 1; i > 0; i--)                         // Fisher–Yates
        {
            int j = rng.NextInt(0, i + 1);
            (pool[i], pool[j]) = (pool[j], pool[i]);
        }
        return pool.Take(count).Order().ToArray();
    }
}
