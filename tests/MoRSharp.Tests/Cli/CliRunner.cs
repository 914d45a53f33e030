using MoRSharp.Cli;

namespace MoRSharp.Tests.Cli;

/// <summary>Runs a `mor` command in-process with captured output.</summary>
public static class CliRunner
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CommandLine.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }
}
