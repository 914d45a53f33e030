using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Modalities.Audio;

/// <summary>
/// One token per log-mel frame: a linear projection of the frame's mel bins to d (a 1-frame convolution, as the
/// HF <c>ASTPatchEmbeddings</c>-style front ends do with wider kernels). Parameter <c>projection.weight</c> [d, M], <c>projection.bias</c> [d].
/// </summary>
public sealed class FrameEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Linear projection;
    private readonly AudioFrontEndConfig config;

    public FrameEmbedding(AudioFrontEndConfig config, int hidden) : base(nameof(FrameEmbedding))
    {
        this.config = config;
        projection = nn.Linear(config.NumMelBins, hidden, hasBias: true);
        RegisterComponents();
    }

    /// <summary>log-mel frames [B, T, M] → frame tokens [B, T, d].</summary>
    public override Tensor forward(Tensor frames)
    {
        if (frames.dim() != 3 || frames.shape[1] != config.MaxFrames || frames.shape[2] != config.NumMelBins)
            throw new ArgumentException($"log-mel batch has shape [{string.Join(", ", frames.shape)}], expected [B, {config.MaxFrames}, {config.NumMelBins}]");
        return projection.forward(frames);
    }
}
