using System.Reflection;
using System.Text.Json;
using MoRSharp.Config;

namespace MoRSharp.Cli;

/// <summary>
/// One <c>mor</c> sub-command. To add a command, add one file under <c>Commands/</c> with a public class implementing this
/// interface and a parameterless constructor; <see cref="CommandLine"/> discovers it by reflection.
/// Commands write to the given writers only (never <see cref="Console"/>), so tests can run them in-process.
/// </summary>
public interface ICommand
{
    /// <summary>The word after <c>mor</c>, e.g. <c>info</c>; or two words for a command in a group, e.g. <c>data prepare</c>.</summary>
    string Name { get; }
    /// <summary>One line for <c>mor --help</c>.</summary>
    string Summary { get; }
    /// <summary>Synopsis lines after <c>usage:</c>, e.g. <c>mor info --config FILE|--preset NAME [--json]</c>.</summary>
    IReadOnlyList<string> Usage { get; }
    IReadOnlyList<CliOption> Options { get; }
    /// <summary>Runs the command; returns the exit code. Throw <see cref="UsageException"/> for bad usage (exit 2) and
    /// <see cref="ConfigException"/>/<see cref="IOException"/> for errors (exit 1); both are printed without a stack trace.</summary>
    int Execute(ParsedOptions options, TextWriter stdout, TextWriter stderr);
}

/// <summary>An option <c>--name</c>; <paramref name="ValueName"/> null means a flag without a value.
/// <paramref name="Repeatable"/> options may be given several times (read them with <see cref="ParsedOptions.GetAll"/>).</summary>
public sealed record CliOption(string Name, string? ValueName, string Help, bool Repeatable = false)
{
    public bool IsFlag => ValueName is null;
}

/// <summary>Bad command-line usage: printed with a hint to <c>--help</c>, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>Options given to a command (names without the leading dashes are not used: keys are <c>--name</c>).</summary>
public sealed class ParsedOptions
{
    private readonly Dictionary<string, string?> _values;
    private readonly Dictionary<string, List<string>> _all;
    public string CommandName { get; }

    public ParsedOptions(string commandName, Dictionary<string, string?> values, Dictionary<string, List<string>>? all = null)
    {
        CommandName = commandName;
        _values = values;
        _all = all ?? new Dictionary<string, List<string>>(StringComparer.Ordinal);
    }

    public bool Has(string name) => _values.ContainsKey(name);

    /// <summary>The value of an option (for a repeatable option given several times: the last one).</summary>
    public string? Get(string name) => _values.TryGetValue(name, out var v) ? v : null;

    /// <summary>Every value of a (repeatable) option, in command-line order; empty if absent.</summary>
    public IReadOnlyList<string> GetAll(string name) =>
        _all.TryGetValue(name, out var list) ? list : _values.TryGetValue(name, out var v) && v is not null ? [v] : [];

    public int? GetInt(string name, int min = int.MinValue)
    {
        var s = Get(name);
        if (s is null) return null;
        if (!int.TryParse(s, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int v))
            throw new UsageException($"{name}: expected an integer, got '{s}'");
        if (v < min) throw new UsageException($"{name}: must be at least {min}, got {v}");
        return v;
    }

    public double? GetDouble(string name)
    {
        var s = Get(name);
        if (s is null) return null;
        if (!double.TryParse(s, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v))
            throw new UsageException($"{name}: expected a number, got '{s}'");
        return v;
    }
}

/// <summary>
/// The <c>mor</c> dispatcher: <c>mor &lt;command&gt; [options]</c>, <c>mor --help</c>, <c>mor &lt;command&gt; --help</c>.
/// Exit codes: 0 success, 1 error (bad config, missing file, …), 2 usage error (unknown command/option, bad value).
/// Errors are printed as one line on stderr; set <c>MOR_DEBUG=1</c> for stack traces.
/// </summary>
public static class CommandLine
{
    public const int ExitOk = 0;
    public const int ExitError = 1;
    public const int ExitUsage = 2;

    private static readonly Lazy<IReadOnlyList<ICommand>> _commands = new(() =>
        typeof(CommandLine).Assembly.GetTypes()
            .Where(t => typeof(ICommand).IsAssignableFrom(t) && t is { IsClass: true, IsAbstract: false }
                        && t.GetConstructor(Type.EmptyTypes) is not null)
            .Select(t => (ICommand)Activator.CreateInstance(t)!)
            .OrderBy(c => c.Name, StringComparer.Ordinal)
            .ToList());

    /// <summary>All commands, sorted by name.</summary>
    public static IReadOnlyList<ICommand> Commands => _commands.Value;

    public static bool DebugEnabled => Environment.GetEnvironmentVariable("MOR_DEBUG") == "1";

    /// <summary>Runs <c>mor</c> with <paramref name="args"/>; never throws (except for writer failures).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        ICommand? command = null;
        try
        {
            if (args.Length == 0)
            {
                WriteMainHelp(stderr);
                return ExitUsage;
            }
            string first = args[0];
            if (first is "--help" or "-h" or "help")
            {
                if (first == "help" && args.Length > 1)
                {
                    command = Find(args.AsSpan(1).ToArray(), out _);
                    WriteCommandHelp(command, stdout);
                    return ExitOk;
                }
                WriteMainHelp(stdout);
                return ExitOk;
            }
            if (first == "--version")
            {
                stdout.WriteLine($"mor {typeof(CommandLine).Assembly.GetName().Version}");
                return ExitOk;
            }
            if (first.StartsWith('-'))
                throw new UsageException($"unknown option '{first}' (options go after the command: mor <command> [options])");

            command = Find(args, out int words);
            var rest = args.AsSpan(words).ToArray();
            if (rest.Any(a => a is "--help" or "-h"))
            {
                WriteCommandHelp(command, stdout);
                return ExitOk;
            }
            var options = Parse(command, rest);
            return command.Execute(options, stdout, stderr);
        }
        catch (UsageException e)
        {
            string prefix = command is null ? "mor" : $"mor {command.Name}";
            stderr.WriteLine($"{prefix}: {e.Message}");
            stderr.WriteLine(command is null ? "Run 'mor --help' for the list of commands." : $"Run 'mor {command.Name} --help' for usage.");
            return ExitUsage;
        }
        catch (Exception e) when (e is ConfigException or IOException or UnauthorizedAccessException or JsonException
            or MoRSharp.Training.TrainingException or MoRSharp.IO.SafeTensorsException or InvalidDataException or ArgumentException)
        {
            stderr.WriteLine($"error: {e.Message}");
            if (DebugEnabled) stderr.WriteLine(e.ToString());
            return ExitError;
        }
        catch (Exception e)
        {
            stderr.WriteLine($"error: {e.GetType().Name}: {e.Message}");
            stderr.WriteLine(DebugEnabled ? e.ToString() : "(set MOR_DEBUG=1 for a stack trace)");
            return ExitError;
        }
    }

    /// <summary>The command named by the first one or two words of <paramref name="args"/> (two for a group such as
    /// <c>data prepare</c>); <paramref name="words"/> tells how many were used.</summary>
    private static ICommand Find(string[] args, out int words)
    {
        string name = args[0];
        words = 1;
        if (args.Length > 1 && Commands.FirstOrDefault(c => c.Name == name + " " + args[1]) is { } sub)
        {
            words = 2;
            return sub;
        }
        var c = Commands.FirstOrDefault(c => c.Name == name);
        if (c is not null) return c;
        var group = Commands.Where(c => c.Name.StartsWith(name + " ", StringComparison.Ordinal)).Select(c => c.Name).ToList();
        if (group.Count > 0)
            throw new UsageException($"'{name}' needs a subcommand: {string.Join(", ", group.Select(g => "mor " + g))}" +
                                     (args.Length > 1 && !args[1].StartsWith('-') ? $" (unknown: '{args[1]}')" : ""));
        string? guess = ConfigJson.Suggest(name, Commands.Select(c => c.Name));
        throw new UsageException($"unknown command '{name}'" + (guess is null ? "" : $" (did you mean '{guess}'?)") +
                                 $"; commands: {string.Join(", ", Commands.Select(c => c.Name))}");
    }

    /// <summary>Parses <c>--name value</c>, <c>--name=value</c> and flags against the command's option list.</summary>
    public static ParsedOptions Parse(ICommand command, IReadOnlyList<string> args)
    {
        var known = command.Options.ToDictionary(o => o.Name, StringComparer.Ordinal);
        var values = new Dictionary<string, string?>(StringComparer.Ordinal);
        var all = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (!a.StartsWith("--", StringComparison.Ordinal) || a.Length == 2)
                throw new UsageException($"unexpected argument '{a}'");
            string name = a;
            string? inline = null;
            int eq = a.IndexOf('=');
            if (eq > 0)
            {
                name = a[..eq];
                inline = a[(eq + 1)..];
            }
            if (!known.TryGetValue(name, out var opt))
            {
                string? guess = ConfigJson.Suggest(name, known.Keys);
                throw new UsageException($"unknown option '{name}'" + (guess is null ? "" : $" (did you mean '{guess}'?)"));
            }
            if (values.ContainsKey(name) && !opt.Repeatable) throw new UsageException($"option '{name}' given more than once");
            if (opt.IsFlag)
            {
                if (inline is not null) throw new UsageException($"option '{name}' takes no value");
                values[name] = null;
            }
            else if (inline is not null)
            {
                values[name] = inline;
            }
            else
            {
                if (i + 1 >= args.Count) throw new UsageException($"option '{name}' needs a value ({opt.ValueName})");
                values[name] = args[++i];
            }
            if (!opt.IsFlag)
            {
                if (!all.TryGetValue(name, out var list)) all[name] = list = [];
                list.Add(values[name]!);
            }
        }
        return new ParsedOptions(command.Name, values, all);
    }

    public static void WriteMainHelp(TextWriter w)
    {
        w.WriteLine("usage: mor <command> [options]");
        w.WriteLine();
        w.WriteLine("MoRSharp — Mixture-of-Recursions language models.");
        w.WriteLine();
        w.WriteLine("commands:");
        int width = Commands.Count == 0 ? 0 : Commands.Max(c => c.Name.Length);
        foreach (var c in Commands) w.WriteLine($"  {c.Name.PadRight(width)}  {c.Summary}");
        w.WriteLine();
        w.WriteLine("Run 'mor <command> --help' for the options of a command. MOR_DEBUG=1 prints stack traces on errors.");
    }

    public static void WriteCommandHelp(ICommand c, TextWriter w)
    {
        for (int i = 0; i < c.Usage.Count; i++) w.WriteLine((i == 0 ? "usage: " : "       ") + c.Usage[i]);
        w.WriteLine();
        w.WriteLine(c.Summary);
        if (c.Options.Count == 0) return;
        w.WriteLine();
        w.WriteLine("options:");
        var heads = c.Options.Select(o => o.IsFlag ? o.Name : $"{o.Name} {o.ValueName}").ToList();
        int width = Math.Max(heads.Max(h => h.Length), "-h, --help".Length);
        for (int i = 0; i < c.Options.Count; i++) w.WriteLine($"  {heads[i].PadRight(width)}  {c.Options[i].Help}");
        w.WriteLine($"  {"-h, --help".PadRight(width)}  show this help");
    }
}
