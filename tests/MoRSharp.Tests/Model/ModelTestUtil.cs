using MoRSharp.Model;
using static TorchSharp.torch;

namespace MoRSharp.Tests.Model;

public static class ModelTestUtil
{
    /// <summary>Seeded random ids [B, T] in [0, vocab).</summary>
    public static Tensor RandomIds(int batch, int length, int vocab, long seed)
    {
        using var gen = new Generator((ulong)seed);
        return torch.randint(0, vocab, [batch, length], generator: gen, dtype: ScalarType.Int64);
    }

    /// <summary>One AdamW step on next-token loss + the weighted routing loss; returns the loss.</summary>
    public static float TrainStep(MoRForCausalLM model, optim.Optimizer opt, Tensor ids)
    {
        using var scope = NewDisposeScope();
        opt.zero_grad();
        var loss = model.Forward(ids).TrainingLoss(ids);
        loss.backward();
        opt.step();
        return loss.item<float>();
    }
}
