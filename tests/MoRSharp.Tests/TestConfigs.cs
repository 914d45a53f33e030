using MoRSharp.Config;

namespace MoRSharp.Tests;

/// <summary>Small shapes for fast unit tests (GQA on, so head grouping is exercised).</summary>
public static class TestConfigs
{
    public static ModelConfig Tiny(string routing = "none", string sharing = "middle_cycle", int numRecursion = 3, int blockSize = 2,
        int hidden = 64, int heads = 4, int kvHeads = 2, int vocab = 97, int context = 64)
    {
        bool middle = sharing.StartsWith("middle");
        var config = new ModelConfig
        {
            HiddenSize = hidden,
            IntermediateSize = 2 * hidden,
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            VocabSize = vocab,
            MaxPositionEmbeddings = context,
            NumHiddenLayers = sharing == "none" ? blockSize : (middle ? 2 : 0) + blockSize * numRecursion,
            InitializerRange = 0.2,   // larger than usual so that routing and mistakes show in the outputs
        };
        if (sharing != "none")
            config.MoR = new MoRConfig { NumRecursion = numRecursion, Sharing = sharing, Routing = routing };
        return config;
    }

    public static ModelConfig Vanilla(int layers = 4) => Tiny(sharing: "none", blockSize: layers);

    /// <summary>(routing, sharing, kv_cache) of every model kind the inference path must treat alike: vanilla, recursive, expert-
    /// and token-choice MoR, with recursion-wise caching and recursive KV sharing.</summary>
    public static TheoryData<string, string, string> ModelKinds => new()
    {
        { "none", "none", "recursion_wise" },
        { "none", "middle_cycle", "recursion_wise" },
        { "none", "middle_cycle", "shared" },
        { "expert", "middle_cycle", "recursion_wise" },
        { "expert", "cycle", "recursion_wise" },
        { "expert", "middle_cycle", "shared" },
        { "token", "middle_cycle", "recursion_wise" },
        { "token", "middle_cycle", "shared" },
    };
}
