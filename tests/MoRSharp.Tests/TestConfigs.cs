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
}
