using System.Diagnostics;
using MoRSharp.Config;
using MoRSharp.IO;
using MoRSharp.Training;
using Xunit.Abstractions;

namespace MoRSharp.Tests.Training;

/// <summary>A disk that fills up while checkpointing: a clear error, the previous checkpoint intact, no half-written folder.</summary>
public class FullDiskTests(ITestOutputHelper output)
{
    [Fact]
    public void Full_disk_while_checkpointing_keeps_the_previous_checkpoint()
    {
        string mount = Directory.CreateTempSubdirectory("mor-fulldisk-").FullName;
        // A small tmpfs is a real full disk (ENOSPC): 3.5 MB holds one checkpoint of this model (≈ 2.2 MB with the AdamW
        // moments) but not two. Mounting needs root, which CI and the dev machines have.
        if (!Sh("mount", "-t", "tmpfs", "-o", "size=3500k", "tmpfs", mount))
        {
            output.WriteLine("could not mount a tmpfs (not root?): nothing to check on this machine");
            Directory.Delete(mount);
            return;
        }
        try
        {
            var config = TestConfigs.Tiny("expert", hidden: 64, heads: 2, kvHeads: 1, vocab: 512, context: 32);
            var options = new TrainingOptions { Steps = 10, Batch = 2, Seq = 16, CheckpointEvery = 2, KeepLast = 5, EvalEvery = 0, Seed = 1 };
            using var trainer = new Trainer(config, options, new ArrayBatchSource(ArrayBatchSource.Pattern(4000, 512, 1), 2, 16), null, mount);
            var e = Assert.Throws<IOException>(() => trainer.Run());
            output.WriteLine(e.Message);
            Assert.Contains("could not write checkpoint", e.Message);
            Assert.Contains("previous checkpoint is intact", e.Message);

            var kept = Checkpoint.List(mount);
            Assert.NotEmpty(kept);
            Assert.Empty(Directory.GetDirectories(Checkpoint.Folder(mount), "*.tmp"));
            using var model = new MoRSharp.Model.MoRForCausalLM(config);
            ModelWeights.Load(model, Path.Combine(kept[^1], Checkpoint.ModelFile));     // loads: complete and valid
            Assert.Equal(Path.GetFileName(kept[^1]), File.ReadAllText(Path.Combine(Checkpoint.Folder(mount), "latest")));
        }
        finally
        {
            Sh("umount", mount);
            try { Directory.Delete(mount, recursive: true); } catch (IOException) { }
        }
    }

    private static bool Sh(string file, params string[] args)
    {
        try
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception) { return false; }
    }
}
