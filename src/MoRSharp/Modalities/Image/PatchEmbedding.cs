using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MoRSharp.Modalities.Image;

/// <summary>
/// ViT patch embedding (HF <c>ViTPatchEmbeddings</c>): a p×p convolution with stride p cuts the image into
/// non-overlapping patches and projects each to d. Parameter <c>projection.weight</c> [d, C, p, p], <c>projection.bias</c> [d].
/// Patches come out in row-major order (row 0 left to right, then row 1, …), which <see cref="RopeTables.Grid"/> follows.
/// </summary>
public sealed class PatchEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d projection;
    private readonly ImageFrontEndConfig config;

    public PatchEmbedding(ImageFrontEndConfig config, int hidden) : base(nameof(PatchEmbedding))
    {
        this.config = config;
        projection = nn.Conv2d(config.NumChannels, hidden, kernel_size: config.PatchSize, stride: config.PatchSize);
        RegisterComponents();
    }

    /// <summary>pixels [B, C, H, W] (normalised) → patch tokens [B, (H/p)·(W/p), d].</summary>
    public override Tensor forward(Tensor pixels)
    {
        if (pixels.dim() != 4 || pixels.shape[1] != config.NumChannels || pixels.shape[2] != config.ImageSize || pixels.shape[3] != config.ImageSize)
            throw new ArgumentException($"image batch has shape [{string.Join(", ", pixels.shape)}], expected [B, {config.NumChannels}, {config.ImageSize}, {config.ImageSize}]");
        using var grid = projection.forward(pixels);          // [B, d, H/p, W/p]
        return grid.flatten(2).transpose(1, 2);                 // [B, P, d]
    }
}
