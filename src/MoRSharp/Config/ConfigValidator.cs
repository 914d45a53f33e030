using MoRSharp.Model;

namespace MoRSharp.Config;

/// <summary>
/// Semantic checks of a <see cref="ModelConfig"/> (after <see cref="ConfigJson.Parse"/>, which only checks keys and types).
/// Every failure is a <see cref="ConfigException"/> whose message starts with the config field (e.g. <c>mor.capacity</c>)
/// and says what was expected.
/// </summary>
public static class ConfigValidator
{
    public static void Validate(ModelConfig c)
    {
        ArgumentNullException.ThrowIfNull(c);

        // ---- model shape
        if (c.ModelType != "llama") Fail("model_type", $"must be \"llama\", got \"{c.ModelType}\"");
        Positive("hidden_size", c.HiddenSize);
        Positive("intermediate_size", c.IntermediateSize);
        Positive("num_hidden_layers", c.NumHiddenLayers);
        Positive("num_attention_heads", c.NumAttentionHeads);
        Positive("num_key_value_heads", c.NumKeyValueHeads);
        if (c.HiddenSize % c.NumAttentionHeads != 0)
            Fail("num_attention_heads", $"must divide hidden_size: {c.HiddenSize} is not divisible by {c.NumAttentionHeads}");
        if (c.NumAttentionHeads % c.NumKeyValueHeads != 0)
            Fail("num_key_value_heads", $"must divide num_attention_heads: {c.NumAttentionHeads} is not divisible by {c.NumKeyValueHeads}");
        if (c.HeadDim % 2 != 0)
            Fail("hidden_size", $"head dimension hidden_size / num_attention_heads = {c.HiddenSize} / {c.NumAttentionHeads} = {c.HeadDim} must be even (RoPE rotates pairs)");
        if (c.VocabSize < 2) Fail("vocab_size", $"must be at least 2, got {c.VocabSize}");
        if (c.MaxPositionEmbeddings < 1) Fail("max_position_embeddings", $"must be at least 1, got {c.MaxPositionEmbeddings}");
        PositiveReal("rms_norm_eps", c.RmsNormEps);
        PositiveReal("rope_theta", c.RopeTheta);
        PositiveReal("initializer_range", c.InitializerRange);
        if (c.HiddenAct != "silu") Fail("hidden_act", $"must be \"silu\" (SwiGLU MLP), got \"{c.HiddenAct}\"");
        TokenId("bos_token_id", c.BosTokenId, c.VocabSize);
        TokenId("eos_token_id", c.EosTokenId, c.VocabSize);
        foreach (var id in c.EosTokenIds ?? []) TokenId("eos_token_id", id, c.VocabSize);

        // ---- recursion block
        var m = c.MoR;
        if (m is null) return;   // vanilla Llama

        // enum-valued strings
        var sharing = m.SharingKind;
        var routing = m.RoutingKind;
        _ = m.RouterArchKind;
        _ = m.AuxLossKind;
        _ = m.BalancingKind;
        var kv = m.KvCacheKind;
        _ = m.GatingKind;
        var func = m.EffectiveRouterFunc;

        if (m.NumRecursion < 1) Fail("mor.num_recursion", $"must be at least 1, got {m.NumRecursion}");
        if (sharing == SharingStrategy.None && m.NumRecursion != 1)
            Fail("mor.num_recursion", $"must be 1 when mor.sharing is none (every layer unique), got {m.NumRecursion}");

        // layout: L = 1 + B·N_r + 1 (Middle-*) or B·N_r (Cycle/Sequence)
        var layout = new RecursionLayout(sharing, c.NumHiddenLayers, m.NumRecursion);

        if (routing != RoutingKind.None)
        {
            if (!layout.IsLooped)
                Fail("mor.routing", $"{m.Routing} routing requires mor.sharing cycle or middle_cycle (a loop of one shared block), got {m.Sharing}");
            if (m.NumRecursion < 2)
                Fail("mor.num_recursion", $"must be at least 2 with {m.Routing} routing, got {m.NumRecursion}");
            if (routing == RoutingKind.Token && func is not (RouterFunc.Softmax or RouterFunc.Sigmoid))
                Fail("mor.router_func", $"token routing requires softmax or sigmoid, got {m.RouterFunc}");
            if (routing == RoutingKind.Expert && func is not (RouterFunc.Sigmoid or RouterFunc.Tanh))
                Fail("mor.router_func", $"expert routing requires sigmoid or tanh, got {m.RouterFunc}");
        }

        if (m.Capacity is not null)
        {
            if (routing == RoutingKind.None)
                Fail("mor.capacity", "is only used with mor.routing expert or token (remove it or set it to null)");
            if (m.Capacity.Length != m.NumRecursion)
                Fail("mor.capacity", $"must have one entry per recursion (mor.num_recursion = {m.NumRecursion}), got {m.Capacity.Length}");
            for (int r = 0; r < m.Capacity.Length; r++)
            {
                double cr = m.Capacity[r];
                if (!double.IsFinite(cr) || cr <= 0 || cr > 1)
                    Fail("mor.capacity", $"entry {r} (recursion {r + 1}) must be in (0, 1], got {cr}");
                if (r > 0 && cr > m.Capacity[r - 1])
                    Fail("mor.capacity", $"must be non-increasing, but entry {r} ({cr}) > entry {r - 1} ({m.Capacity[r - 1]})");
            }
        }

        if (m.Alpha is double alpha) PositiveReal("mor.alpha", alpha);
        NonNegative("mor.aux_coeff", m.AuxCoeff);
        if (m.ZLossCoeff is double z) NonNegative("mor.z_loss_coeff", z);
        NonNegative("mor.balancing_coeff", m.BalancingCoeff);
        NonNegative("mor.bias_update_rate", m.BiasUpdateRate);
        PositiveReal("mor.router_temperature", m.RouterTemperature);

        if (kv == KvCacheKind.Shared)
        {
            if (!layout.IsLooped)
                Fail("mor.kv_cache", $"shared (recursive KV sharing) requires mor.sharing cycle or middle_cycle, got {m.Sharing}");
            if (routing != RoutingKind.None && m.EffectiveCapacity[0] != 1.0)
                Fail("mor.kv_cache", $"shared requires every token to pass recursion 1 (mor.capacity[0] = 1), got {m.EffectiveCapacity[0]}");
        }
    }

    private static void Fail(string field, string what) => throw new ConfigException($"{field}: {what}");

    private static void Positive(string field, int v)
    {
        if (v <= 0) Fail(field, $"must be positive, got {v}");
    }

    private static void PositiveReal(string field, double v)
    {
        if (!double.IsFinite(v) || v <= 0) Fail(field, $"must be a positive number, got {v}");
    }

    private static void NonNegative(string field, double v)
    {
        if (!double.IsFinite(v) || v < 0) Fail(field, $"must be ≥ 0, got {v}");
    }

    private static void TokenId(string field, int? id, int vocab)
    {
        if (id is int i && (i < 0 || i >= vocab)) Fail(field, $"must be in [0, vocab_size = {vocab}), got {i}");
    }
}
