using System.Globalization;
using System.Text;

namespace MoRSharp.Data.Tokenizers;

/// <summary>A chat template that cannot be parsed or rendered; the message names the template position (line, column).</summary>
public sealed class ChatTemplateException(string message) : Exception(message);

/// <summary>
/// A small interpreter for the subset of Jinja that Hugging Face chat templates use, with the environment Hugging Face
/// renders them in (<c>trim_blocks</c>, <c>lstrip_blocks</c>, the <c>loopcontrols</c> extension, default undefined).
/// <para>Statements: <c>for</c> (one or two targets, <c>else</c>, <c>loop.index/index0/first/last/length/revindex/revindex0</c>,
/// <c>break</c>/<c>continue</c>), <c>if/elif/else</c>, <c>set</c> (names and <c>ns.attr</c>), <c>generation</c> blocks
/// (rendered as their body), comments, whitespace control <c>{%- -%}</c> / <c>{{- -}}</c> / <c>+</c>.
/// Expressions: literals (strings with Python escapes, numbers, true/false/none, lists, dicts), <c>+ - * / // % **</c>,
/// <c>~</c>, comparisons, <c>and/or/not</c>, <c>in</c>/<c>not in</c>, <c>a if c else b</c>, indexing, slicing, attributes
/// (<c>message.role</c> = <c>message['role']</c>), calls, filters (trim, length/count, upper, lower, title, capitalize,
/// default, first, last, join, string, int, list, tojson, replace, safe), tests (defined, undefined, none, string, number,
/// integer, mapping, sequence, iterable, boolean, true, false, even, odd), string methods (strip, lstrip, rstrip,
/// startswith, endswith, upper, lower, title, split, replace), dict methods (items, keys, values, get), globals
/// <c>raise_exception</c>, <c>namespace</c>, <c>range</c>. Anything else is a <see cref="ChatTemplateException"/>
/// naming the line and column.</para>
/// </summary>
public sealed class JinjaTemplate
{
    private readonly List<Stmt> body;
    private readonly string name;
    private readonly string source;

    private JinjaTemplate(string source, string name, List<Stmt> body)
    {
        this.source = source;
        this.name = name;
        this.body = body;
    }

    /// <summary>Parses <paramref name="source"/>; <paramref name="name"/> prefixes error messages (e.g. the file it came from).</summary>
    public static JinjaTemplate Parse(string source, string name = "chat template")
    {
        source = source.Replace("\r\n", "\n");
        if (source.EndsWith('\n')) source = source[..^1];                // Jinja drops one trailing newline (keep_trailing_newline=False)
        var pieces = new Lexer(source, name).Pieces();
        var parser = new Parser(pieces, source, name);
        var body = parser.ParseBody([], out _);
        return new JinjaTemplate(source, name, body);
    }

    /// <summary>Renders with the given variables (strings, bools, numbers, lists, dictionaries, null).</summary>
    public string Render(IReadOnlyDictionary<string, object?> variables)
    {
        var scope = new Scope(null);
        foreach (var (k, v) in Globals) scope.Vars[k] = v;
        foreach (var (k, v) in variables) scope.Vars[k] = v;
        var sb = new StringBuilder();
        var ctx = new Context(name, source);
        foreach (var s in body) s.Render(ctx, scope, sb);
        return sb.ToString();
    }

    // ================================================================== values

    /// <summary>Jinja's undefined: empty when printed, false, fails on attribute access.</summary>
    private sealed class Undefined(string description)
    {
        public string Description { get; } = description;
        public override string ToString() => "";
    }

    private sealed class Namespace
    {
        public Dictionary<string, object?> Attrs { get; } = new(StringComparer.Ordinal);
    }

    private sealed class LoopInfo(int index0, int length)
    {
        public object? Get(string attr) => attr switch
        {
            "index0" => (long)index0,
            "index" => (long)index0 + 1,
            "first" => index0 == 0,
            "last" => index0 == length - 1,
            "length" => (long)length,
            "revindex" => (long)(length - index0),
            "revindex0" => (long)(length - index0 - 1),
            _ => new Undefined($"loop.{attr}"),
        };
    }

    /// <summary>A callable: positional and keyword arguments → value.</summary>
    private delegate object? Callable(Context ctx, Node at, List<object?> args, Dictionary<string, object?> kwargs);

    private static readonly Dictionary<string, object?> Globals = new(StringComparer.Ordinal)
    {
        ["raise_exception"] = (Callable)((ctx, at, args, _) =>
            throw new ChatTemplateException($"{ctx.Where(at)}: the template rejected the conversation: {(args.Count > 0 ? Str(args[0]) : "raise_exception called")}")),
        ["namespace"] = (Callable)((ctx, at, args, kwargs) =>
        {
            var ns = new Namespace();
            foreach (var a in args)
                if (a is Dictionary<string, object?> d) foreach (var (k, v) in d) ns.Attrs[k] = v;
                else throw ctx.Error(at, "namespace() takes keyword arguments or a dict");
            foreach (var (k, v) in kwargs) ns.Attrs[k] = v;
            return ns;
        }),
        ["range"] = (Callable)((ctx, at, args, _) =>
        {
            var n = args.Select(a => ToLong(ctx, at, a)).ToList();
            long start = n.Count > 1 ? n[0] : 0, stop = n.Count == 1 ? n[0] : n.Count > 1 ? n[1] : 0, step = n.Count > 2 ? n[2] : 1;
            if (n.Count is < 1 or > 3 || step == 0) throw ctx.Error(at, "range() takes 1 to 3 integers and a non-zero step");
            var list = new List<object?>();
            for (long i = start; step > 0 ? i < stop : i > stop; i += step)
            {
                list.Add(i);
                if (list.Count > 1_000_000) throw ctx.Error(at, "range() is too long");
            }
            return list;
        }),
    };

    private static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        Dictionary<string, object?> d => d.Count > 0,
        _ => true,
    };

    /// <summary>Python's str() of a value (what {{ }} prints).</summary>
    private static string Str(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        string s => s,
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => PyFloat(d),
        _ => Repr(v),
    };

    private static string PyFloat(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        string s = d.ToString("R", CultureInfo.InvariantCulture);
        if (s.Contains('E')) s = s.Replace("E+", "e+").Replace("E-", "e-");
        else if (!s.Contains('.')) s += ".0";
        return s;
    }

    /// <summary>Python's repr() (how lists and dicts print).</summary>
    private static string Repr(object? v) => v switch
    {
        string s => "'" + s.Replace("\\", "\\\\").Replace("'", "\\'").Replace("\n", "\\n") + "'",
        List<object?> l => "[" + string.Join(", ", l.Select(Repr)) + "]",
        Dictionary<string, object?> d => "{" + string.Join(", ", d.Select(kv => Repr(kv.Key) + ": " + Repr(kv.Value))) + "}",
        Namespace => "<Namespace>",
        LoopInfo => "<LoopContext>",
        Callable => "<function>",
        _ => Str(v),
    };

    private static string Json(object? v) => v switch
    {
        null or Undefined => "null",
        bool b => b ? "true" : "false",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => PyFloat(d),
        string s => System.Text.Json.JsonSerializer.Serialize(s, JsonOptions),
        List<object?> l => "[" + string.Join(", ", l.Select(Json)) + "]",
        Dictionary<string, object?> d => "{" + string.Join(", ", d.Select(kv => Json(kv.Key) + ": " + Json(kv.Value))) + "}",
        Namespace n => Json(n.Attrs),
        _ => Json(Str(v)),
    };

    // Python's json.dumps escapes non-ASCII (ensure_ascii); Hugging Face's tojson keeps it (ensure_ascii=False).
    private static readonly System.Text.Json.JsonSerializerOptions JsonOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static bool IsNumber(object? v) => v is long or double or bool;
    private static double AsDouble(object? v) => v switch { long l => l, double d => d, bool b => b ? 1 : 0, _ => double.NaN };

    private static long ToLong(Context ctx, Node at, object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        double d when d == Math.Floor(d) => (long)d,
        _ => throw ctx.Error(at, $"expected an integer, got {TypeName(v)}"),
    };

    private static string TypeName(object? v) => v switch
    {
        null => "none", Undefined u => $"undefined ({u.Description})", string => "a string", bool => "a boolean", long => "an integer",
        double => "a float", List<object?> => "a list", Dictionary<string, object?> => "a dict", _ => v.GetType().Name,
    };

    private static bool Equal(object? a, object? b)
    {
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b)) return AsDouble(a) == AsDouble(b);
        if (a is string sa && b is string sb) return string.Equals(sa, sb, StringComparison.Ordinal);
        if (a is List<object?> la && b is List<object?> lb) return la.Count == lb.Count && la.Zip(lb).All(p => Equal(p.First, p.Second));
        if (a is Dictionary<string, object?> da && b is Dictionary<string, object?> db)
            return da.Count == db.Count && da.All(kv => db.TryGetValue(kv.Key, out var o) && Equal(kv.Value, o));
        return ReferenceEquals(a, b);
    }

    private static List<object?> Iterate(Context ctx, Node at, object? v) => v switch
    {
        List<object?> l => l,
        Undefined => [],
        string s => s.Select(c => (object?)c.ToString()).ToList(),
        Dictionary<string, object?> d => d.Keys.Select(k => (object?)k).ToList(),
        _ => throw ctx.Error(at, $"{TypeName(v)} is not iterable"),
    };

    // ================================================================== evaluation context

    private sealed class Context(string name, string source)
    {
        public string Where(Node n)
        {
            var (line, col) = Position(source, n.Offset);
            return $"{name} line {line}, column {col}";
        }
        public ChatTemplateException Error(Node n, string what) => new($"{Where(n)}: {what}");
    }

    private static (int line, int col) Position(string source, int offset)
    {
        int line = 1, col = 1;
        for (int i = 0; i < offset && i < source.Length; i++)
        {
            if (source[i] == '\n') { line++; col = 1; }
            else col++;
        }
        return (line, col);
    }

    private sealed class Scope(Scope? parent)
    {
        public Dictionary<string, object?> Vars { get; } = new(StringComparer.Ordinal);
        public object? Lookup(string name)
        {
            for (var s = this; s is not null; s = s.Parent)
                if (s.Vars.TryGetValue(name, out var v)) return v;
            return new Undefined($"'{name}'");
        }
        public Scope? Parent { get; } = parent;
    }

    // ================================================================== lexer

    private enum TokKind { Name, String, Int, Float, Op }

    private sealed record Tok(TokKind Kind, string Text, object? Value, int Offset);

    private enum PieceKind { Text, Output, Statement }

    private sealed record Piece(PieceKind Kind, string Text, List<Tok> Tokens, int Offset);

    private sealed class Lexer(string source, string name)
    {
        private int pos;

        private ChatTemplateException Error(int offset, string what)
        {
            var (line, col) = Position(source, offset);
            return new ChatTemplateException($"{name} line {line}, column {col}: {what}");
        }

        public List<Piece> Pieces()
        {
            var pieces = new List<Piece>();
            var text = new StringBuilder();
            int textStart = 0;
            bool lineStarting = true;
            while (pos < source.Length)
            {
                int open = FindTagStart(pos);
                if (open < 0) { text.Append(source, pos, source.Length - pos); pos = source.Length; break; }
                text.Append(source, pos, open - pos);
                char kind = source[open + 1];                        // '{', '%' or '#'
                char sign = open + 2 < source.Length ? source[open + 2] : '\0';
                string chunk = text.ToString();
                if (sign == '-') chunk = chunk.TrimEnd();
                else if (sign != '+' && kind != '{')
                {
                    int lpos = chunk.LastIndexOf('\n') + 1;          // lstrip_blocks: whitespace from the line start to a block tag
                    if ((lpos > 0 || lineStarting) && chunk.Length > lpos && chunk[lpos..].All(c => c is ' ' or '\t' or '\f' or '\v'))
                        chunk = chunk[..lpos];
                }
                if (chunk.Length > 0) pieces.Add(new Piece(PieceKind.Text, chunk, [], textStart));
                text.Clear();
                pos = open + 2 + (sign is '-' or '+' ? 1 : 0);
                int tagStart = open;
                bool stripAfter;
                if (kind == '#')
                {
                    int close = source.IndexOf("#}", pos, StringComparison.Ordinal);
                    if (close < 0) throw Error(tagStart, "comment '{#' is never closed with '#}'");
                    stripAfter = close > pos && source[close - 1] == '-';
                    bool keep = close > pos && source[close - 1] == '+';
                    pos = close + 2;
                    lineStarting = AfterTag(stripAfter, trim: !keep);
                    textStart = pos;
                    continue;
                }
                var tokens = Tokens(kind == '{' ? "}}" : "%}", tagStart, out stripAfter, out bool keepNewline);
                pieces.Add(new Piece(kind == '{' ? PieceKind.Output : PieceKind.Statement, "", tokens, tagStart));
                lineStarting = AfterTag(stripAfter, trim: kind == '%' && !keepNewline);
                textStart = pos;
            }
            if (text.Length > 0) pieces.Add(new Piece(PieceKind.Text, text.ToString(), [], textStart));
            return pieces;
        }

        /// <summary>Whitespace after a tag: all of it for '-', one newline for a block tag (trim_blocks). Returns "a line starts here".</summary>
        private bool AfterTag(bool stripAll, bool trim)
        {
            int start = pos;
            if (stripAll) while (pos < source.Length && char.IsWhiteSpace(source[pos])) pos++;
            else if (trim && pos < source.Length && source[pos] == '\n') pos++;
            return pos > start && source[pos - 1] == '\n';
        }

        private int FindTagStart(int from)
        {
            for (int i = from; i + 1 < source.Length; i++)
                if (source[i] == '{' && source[i + 1] is '{' or '%' or '#') return i;
            return -1;
        }

        private static readonly string[] Ops = ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "="];

        private List<Tok> Tokens(string end, int tagStart, out bool stripAfter, out bool keepNewline)
        {
            var list = new List<Tok>();
            int depth = 0;
            while (true)
            {
                while (pos < source.Length && char.IsWhiteSpace(source[pos])) pos++;
                if (pos >= source.Length) throw Error(tagStart, $"tag is never closed with '{end}'");
                if (depth == 0)
                {
                    foreach (var (prefix, strip, keep) in new[] { ("-", true, false), ("+", false, true), ("", false, false) })
                    {
                        if (string.CompareOrdinal(source, pos, prefix + end, 0, prefix.Length + end.Length) == 0)
                        {
                            pos += prefix.Length + end.Length;
                            stripAfter = strip;
                            keepNewline = keep;
                            return list;
                        }
                    }
                }
                int start = pos;
                char c = source[pos];
                if (char.IsLetter(c) || c == '_')
                {
                    while (pos < source.Length && (char.IsLetterOrDigit(source[pos]) || source[pos] == '_')) pos++;
                    list.Add(new Tok(TokKind.Name, source[start..pos], null, start));
                }
                else if (char.IsDigit(c))
                {
                    while (pos < source.Length && (char.IsDigit(source[pos]) || source[pos] == '_')) pos++;
                    bool isFloat = false;
                    if (pos + 1 < source.Length && source[pos] == '.' && char.IsDigit(source[pos + 1]))
                    {
                        isFloat = true;
                        pos++;
                        while (pos < source.Length && char.IsDigit(source[pos])) pos++;
                    }
                    if (pos < source.Length && source[pos] is 'e' or 'E')
                    {
                        int save = pos++;
                        if (pos < source.Length && source[pos] is '+' or '-') pos++;
                        if (pos < source.Length && char.IsDigit(source[pos])) { isFloat = true; while (pos < source.Length && char.IsDigit(source[pos])) pos++; }
                        else pos = save;
                    }
                    string num = source[start..pos].Replace("_", "");
                    if (isFloat) list.Add(new Tok(TokKind.Float, num, double.Parse(num, CultureInfo.InvariantCulture), start));
                    else if (long.TryParse(num, NumberStyles.None, CultureInfo.InvariantCulture, out long l)) list.Add(new Tok(TokKind.Int, num, l, start));
                    else throw Error(start, $"integer {num} is too large");
                }
                else if (c is '\'' or '"')
                {
                    list.Add(new Tok(TokKind.String, "", ReadString(c, start), start));
                }
                else
                {
                    string? op = Ops.FirstOrDefault(o => string.CompareOrdinal(source, pos, o, 0, o.Length) == 0);
                    if (op is null) throw Error(start, $"unexpected character '{c}'");
                    if (op is "(" or "[" or "{") depth++;
                    if (op is ")" or "]" or "}") depth--;
                    pos += op.Length;
                    list.Add(new Tok(TokKind.Op, op, null, start));
                }
            }
        }

        /// <summary>A quoted string with Python escapes (\n, \t, \\, \', \", \xhh, \uXXXX, …; unknown escapes stay as written).</summary>
        private string ReadString(char quote, int start)
        {
            var sb = new StringBuilder();
            pos++;
            while (true)
            {
                if (pos >= source.Length) throw Error(start, "string literal is never closed");
                char c = source[pos++];
                if (c == quote) return sb.ToString();
                if (c != '\\') { sb.Append(c); continue; }
                if (pos >= source.Length) throw Error(start, "string literal is never closed");
                char e = source[pos++];
                switch (e)
                {
                    case 'n': sb.Append('\n'); break;
                    case 't': sb.Append('\t'); break;
                    case 'r': sb.Append('\r'); break;
                    case '0': sb.Append('\0'); break;
                    case 'a': sb.Append('\a'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'v': sb.Append('\v'); break;
                    case '\\': sb.Append('\\'); break;
                    case '\'': sb.Append('\''); break;
                    case '"': sb.Append('"'); break;
                    case '\n': break;
                    case 'x': sb.Append(Hex(2, start)); break;
                    case 'u': sb.Append(Hex(4, start)); break;
                    case 'U': sb.Append(char.ConvertFromUtf32(int.Parse(HexDigits(8, start), NumberStyles.HexNumber, CultureInfo.InvariantCulture))); break;
                    default: sb.Append('\\').Append(e); break;
                }
            }
        }

        private char Hex(int n, int start) => (char)int.Parse(HexDigits(n, start), NumberStyles.HexNumber, CultureInfo.InvariantCulture);

        private string HexDigits(int n, int start)
        {
            if (pos + n > source.Length || !source.AsSpan(pos, n).ToString().All(Uri.IsHexDigit)) throw Error(start, "bad \\x or \\u escape in a string literal");
            string s = source.Substring(pos, n);
            pos += n;
            return s;
        }
    }

    // ================================================================== syntax tree

    private abstract class Node(int offset)
    {
        public int Offset { get; } = offset;
    }

    private enum Flow { Normal, Break, Continue }

    private abstract class Stmt(int offset) : Node(offset)
    {
        public abstract Flow Render(Context ctx, Scope scope, StringBuilder sb);
    }

    private sealed class TextStmt(int offset, string text) : Stmt(offset)
    {
        public override Flow Render(Context ctx, Scope scope, StringBuilder sb) { sb.Append(text); return Flow.Normal; }
    }

    private sealed class OutputStmt(int offset, Expr expr) : Stmt(offset)
    {
        public override Flow Render(Context ctx, Scope scope, StringBuilder sb) { sb.Append(Str(expr.Eval(ctx, scope))); return Flow.Normal; }
    }

    private static Flow RenderAll(List<Stmt> body, Context ctx, Scope scope, StringBuilder sb)
    {
        foreach (var s in body)
        {
            var f = s.Render(ctx, scope, sb);
            if (f != Flow.Normal) return f;
        }
        return Flow.Normal;
    }

    private sealed class IfStmt(int offset, List<(Expr cond, List<Stmt> body)> branches, List<Stmt>? orElse) : Stmt(offset)
    {
        public override Flow Render(Context ctx, Scope scope, StringBuilder sb)
        {
            foreach (var (cond, body) in branches)
                if (Truthy(cond.Eval(ctx, scope))) return RenderAll(body, ctx, scope, sb);
            return orElse is null ? Flow.Normal : RenderAll(orElse, ctx, scope, sb);
        }
    }

    private sealed class ForStmt(int offset, List<string> targets, Expr iterable, List<Stmt> body, List<Stmt>? orElse) : Stmt(offset)
    {
        public override Flow Render(Context ctx, Scope scope, StringBuilder sb)
        {
            var items = Iterate(ctx, this, iterable.Eval(ctx, scope));
            if (items.Count == 0) return orElse is null ? Flow.Normal : RenderAll(orElse, ctx, scope, sb);
            for (int i = 0; i < items.Count; i++)
            {
                var inner = new Scope(scope);                          // each iteration has its own scope (Jinja semantics)
                inner.Vars["loop"] = new LoopInfo(i, items.Count);
                if (targets.Count == 1) inner.Vars[targets[0]] = items[i];
                else
                {
                    var parts = items[i] as List<object?> ?? throw ctx.Error(this, $"cannot unpack {TypeName(items[i])} into {targets.Count} names");
                    if (parts.Count != targets.Count) throw ctx.Error(this, $"cannot unpack {parts.Count} values into {targets.Count} names");
                    for (int t = 0; t < targets.Count; t++) inner.Vars[targets[t]] = parts[t];
                }
                if (RenderAll(body, ctx, inner, sb) == Flow.Break) break;
            }
            return Flow.Normal;
        }
    }

    private sealed class SetStmt(int offset, string target, string? attr, Expr value) : Stmt(offset)
    {
        public override Flow Render(Context ctx, Scope scope, StringBuilder sb)
        {
            var v = value.Eval(ctx, scope);
            if (attr is null) { scope.Vars[target] = v; return Flow.Normal; }
            if (scope.Lookup(target) is not Namespace ns) throw ctx.Error(this, $"'{target}' is not a namespace; only namespace() objects take attribute assignment");
            ns.Attrs[attr] = v;
            return Flow.Normal;
        }
    }

    private sealed class LoopControlStmt(int offset, Flow flow) : Stmt(offset)
    {
        public override Flow Render(Context ctx, Scope scope, StringBuilder sb) => flow;
    }

    private sealed class BlockStmt(int offset, List<Stmt> body) : Stmt(offset)
    {
        public override Flow Render(Context ctx, Scope scope, StringBuilder sb) => RenderAll(body, ctx, scope, sb);
    }

    private abstract class Expr(int offset) : Node(offset)
    {
        public abstract object? Eval(Context ctx, Scope scope);
    }

    private sealed class Literal(int offset, object? value) : Expr(offset)
    {
        public object? Value { get; } = value;
        public override object? Eval(Context ctx, Scope scope) => Value;
    }

    private sealed class NameExpr(int offset, string name) : Expr(offset)
    {
        public string Name { get; } = name;
        public override object? Eval(Context ctx, Scope scope) => scope.Lookup(Name);
    }

    private sealed class ListExpr(int offset, List<Expr> items) : Expr(offset)
    {
        public override object? Eval(Context ctx, Scope scope) => items.Select(i => i.Eval(ctx, scope)).ToList();
    }

    private sealed class DictExpr(int offset, List<(Expr key, Expr value)> items) : Expr(offset)
    {
        public override object? Eval(Context ctx, Scope scope)
        {
            var d = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (k, v) in items)
                d[k.Eval(ctx, scope) as string ?? throw ctx.Error(k, "dict keys must be strings")] = v.Eval(ctx, scope);
            return d;
        }
    }

    private sealed class CondExpr(int offset, Expr then, Expr cond, Expr? orElse) : Expr(offset)
    {
        public override object? Eval(Context ctx, Scope scope) =>
            Truthy(cond.Eval(ctx, scope)) ? then.Eval(ctx, scope) : orElse is null ? new Undefined("the else branch") : orElse.Eval(ctx, scope);
    }

    private sealed class UnaryExpr(int offset, string op, Expr operand) : Expr(offset)
    {
        public override object? Eval(Context ctx, Scope scope)
        {
            var v = operand.Eval(ctx, scope);
            return op switch
            {
                "not" => !Truthy(v),
                "-" => v switch { long l => (object)(-l), double d => -d, bool b => b ? -1L : 0L, _ => throw ctx.Error(this, $"cannot negate {TypeName(v)}") },
                _ => v is long or double ? v : throw ctx.Error(this, $"unary + needs a number, got {TypeName(v)}"),
            };
        }
    }

    private sealed class BinaryExpr(int offset, string op, Expr left, Expr right) : Expr(offset)
    {
        public override object? Eval(Context ctx, Scope scope)
        {
            if (op == "and") { var l = left.Eval(ctx, scope); return Truthy(l) ? right.Eval(ctx, scope) : l; }
            if (op == "or") { var l = left.Eval(ctx, scope); return Truthy(l) ? l : right.Eval(ctx, scope); }
            var a = left.Eval(ctx, scope);
            var b = right.Eval(ctx, scope);
            switch (op)
            {
                case "~": return Str(a) + Str(b);
                case "==": return Equal(a, b);
                case "!=": return !Equal(a, b);
                case "in": return Contains(ctx, b, a);
                case "not in": return !Contains(ctx, b, a);
                case "<" or ">" or "<=" or ">=":
                {
                    int c;
                    if (IsNumber(a) && IsNumber(b)) c = AsDouble(a).CompareTo(AsDouble(b));
                    else if (a is string sa && b is string sb) c = string.CompareOrdinal(sa, sb);
                    else throw ctx.Error(this, $"cannot compare {TypeName(a)} with {TypeName(b)} using {op}");
                    return op switch { "<" => c < 0, ">" => c > 0, "<=" => c <= 0, _ => c >= 0 };
                }
                case "+":
                    if (a is string s1 && b is string s2) return s1 + s2;
                    if (a is List<object?> l1 && b is List<object?> l2) return l1.Concat(l2).ToList();
                    break;
                case "*" when a is string rep && b is long times: return string.Concat(Enumerable.Repeat(rep, (int)Math.Clamp(times, 0, 100_000)));
            }
            if (!IsNumber(a) || !IsNumber(b) || a is Undefined || b is Undefined)
                throw ctx.Error(this, $"unsupported operand types for {op}: {TypeName(a)} and {TypeName(b)}");
            bool ints = a is long or bool && b is long or bool;
            if (ints)
            {
                long x = (long)AsDouble(a), y = (long)AsDouble(b);
                switch (op)
                {
                    case "+": return x + y;
                    case "-": return x - y;
                    case "*": return x * y;
                    case "/": if (y == 0) throw ctx.Error(this, "division by zero"); return (double)x / y;
                    case "//": if (y == 0) throw ctx.Error(this, "division by zero"); return (long)Math.Floor((double)x / y);
                    case "%": if (y == 0) throw ctx.Error(this, "modulo by zero"); return ((x % y) + y) % y;   // Python: sign of the divisor
                    case "**": return y >= 0 ? (object)(long)Math.Pow(x, y) : Math.Pow(x, y);
                }
            }
            double p = AsDouble(a), q = AsDouble(b);
            return op switch
            {
                "+" => p + q, "-" => p - q, "*" => p * q,
                "/" => q == 0 ? throw ctx.Error(this, "division by zero") : p / q,
                "//" => q == 0 ? throw ctx.Error(this, "division by zero") : Math.Floor(p / q),
                "%" => q == 0 ? throw ctx.Error(this, "modulo by zero") : p - q * Math.Floor(p / q),
                "**" => Math.Pow(p, q),
                _ => throw ctx.Error(this, $"unknown operator {op}"),
            };
        }

        private bool Contains(Context ctx, object? container, object? item) => container switch
        {
            string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal) : throw ctx.Error(this, $"'in <string>' needs a string on the left, got {TypeName(item)}"),
            List<object?> l => l.Any(x => Equal(x, item)),
            Dictionary<string, object?> d => item is string k && d.ContainsKey(k),
            Undefined u => throw ctx.Error(this, $"{u.Description} is undefined"),
            _ => throw ctx.Error(this, $"'in' needs a string, list or dict on the right, got {TypeName(container)}"),
        };
    }

    private sealed class GetAttr(int offset, Expr target, string attr) : Expr(offset)
    {
        public override object? Eval(Context ctx, Scope scope)
        {
            var t = target.Eval(ctx, scope);
            return t switch
            {
                Undefined u => throw ctx.Error(this, $"{u.Description} is undefined (cannot read .{attr})"),
                null => throw ctx.Error(this, $"none has no attribute '{attr}'"),
                Dictionary<string, object?> d => d.TryGetValue(attr, out var v) ? v : (object?)Methods.Dict(d, attr) ?? new Undefined($"'{attr}'"),
                Namespace ns => ns.Attrs.TryGetValue(attr, out var v) ? v : new Undefined($"namespace attribute '{attr}'"),
                LoopInfo loop => loop.Get(attr),
                string s => (object?)Methods.String(s, attr) ?? new Undefined($"str.{attr}"),
                _ => new Undefined($"'{attr}'"),
            };
        }
    }

    private sealed class GetItem(int offset, Expr target, Expr index) : Expr(offset)
    {
        public override object? Eval(Context ctx, Scope scope)
        {
            var t = target.Eval(ctx, scope);
            var i = index.Eval(ctx, scope);
            switch (t)
            {
                case Undefined u: throw ctx.Error(this, $"{u.Description} is undefined (cannot index it)");
                case Dictionary<string, object?> d:
                    return i is string k && d.TryGetValue(k, out var v) ? v : new Undefined($"key {Repr(i)}");
                case Namespace ns:
                    return i is string a && ns.Attrs.TryGetValue(a, out var nv) ? nv : new Undefined($"key {Repr(i)}");
                case List<object?> l when i is long or bool:
                {
                    long n = ToLong(ctx, this, i);
                    if (n < 0) n += l.Count;
                    return n >= 0 && n < l.Count ? l[(int)n] : new Undefined($"list index {Str(i)} (the list has {l.Count} items)");
                }
                case string s when i is long or bool:
                {
                    long n = ToLong(ctx, this, i);
                    if (n < 0) n += s.Length;
                    return n >= 0 && n < s.Length ? s[(int)n].ToString() : new Undefined($"string index {Str(i)}");
                }
                case LoopInfo loop when i is string attr: return loop.Get(attr);
                default: throw ctx.Error(this, $"cannot index {TypeName(t)} with {TypeName(i)}");
            }
        }
    }

    private sealed class SliceExpr(int offset, Expr target, Expr? start, Expr? stop, Expr? step) : Expr(offset)
    {
        public override object? Eval(Context ctx, Scope scope)
        {
            var t = target.Eval(ctx, scope);
            int len = t switch
            {
                List<object?> l => l.Count,
                string s => s.Length,
                Undefined u => throw ctx.Error(this, $"{u.Description} is undefined (cannot slice it)"),
                _ => throw ctx.Error(this, $"cannot slice {TypeName(t)}"),
            };
            long st = step is null ? 1 : ToLong(ctx, this, step.Eval(ctx, scope));
            if (st == 0) throw ctx.Error(this, "slice step cannot be zero");
            long Bound(Expr? e, long dflt)
            {
                if (e is null) return dflt;
                var v = e.Eval(ctx, scope);
                if (v is null) return dflt;
                long n = ToLong(ctx, this, v);
                if (n < 0) n += len;
                return st > 0 ? Math.Clamp(n, 0, len) : Math.Clamp(n, -1, len - 1);
            }
            long a = Bound(start, st > 0 ? 0 : len - 1), b = Bound(stop, st > 0 ? len : -1);
            var idx = new List<int>();
            for (long i = a; st > 0 ? i < b : i > b; i += st) idx.Add((int)i);
            return t is string str ? string.Concat(idx.Select(i => str[i])) : idx.Select(i => ((List<object?>)t)[i]).ToList();
        }
    }

    private sealed class CallExpr(int offset, Expr callee, List<Expr> args, List<(string name, Expr value)> kwargs) : Expr(offset)
    {
        public override object? Eval(Context ctx, Scope scope)
        {
            var f = callee.Eval(ctx, scope);
            if (f is not Callable c)
            {
                string what = callee is NameExpr n ? $"'{n.Name}'" : callee is GetAttr ? "this method" : "this value";
                throw ctx.Error(this, f is Undefined ? $"{what} is not defined (functions available: raise_exception, namespace, range and the string/dict methods listed in the docs)"
                                                     : $"{what} is {TypeName(f)}, not a function");
            }
            var a = args.Select(x => x.Eval(ctx, scope)).ToList();
            var k = kwargs.ToDictionary(x => x.name, x => x.value.Eval(ctx, scope), StringComparer.Ordinal);
            return c(ctx, this, a, k);
        }
    }

    private sealed class FilterExpr(int offset, Expr target, string filter, List<Expr> args) : Expr(offset)
    {
        public override object? Eval(Context ctx, Scope scope) =>
            Filters.Apply(ctx, this, filter, target.Eval(ctx, scope), args.Select(a => a.Eval(ctx, scope)).ToList());
    }

    private sealed class TestExpr(int offset, Expr target, string test, bool negate, List<Expr> args) : Expr(offset)
    {
        public override object? Eval(Context ctx, Scope scope)
        {
            var v = target.Eval(ctx, scope);
            var a = args.Select(x => x.Eval(ctx, scope)).ToList();
            bool r = test switch
            {
                "defined" => v is not Undefined,
                "undefined" => v is Undefined,
                "none" => v is null,
                "string" => v is string,
                "number" => v is long or double,
                "integer" => v is long,
                "float" => v is double,
                "boolean" => v is bool,
                "true" => v is true,
                "false" => v is false,
                "mapping" => v is Dictionary<string, object?> or Namespace,
                "sequence" or "iterable" => v is List<object?> or string or Dictionary<string, object?>,
                "even" => ToLong(ctx, this, v) % 2 == 0,
                "odd" => ToLong(ctx, this, v) % 2 != 0,
                "eq" or "equalto" or "==" => a.Count == 1 ? Equal(v, a[0]) : throw ctx.Error(this, $"test '{test}' takes one argument"),
                "ne" or "!=" => a.Count == 1 ? !Equal(v, a[0]) : throw ctx.Error(this, $"test '{test}' takes one argument"),
                _ => throw ctx.Error(this, $"unknown test 'is {test}' (supported: defined, undefined, none, string, number, integer, float, boolean, true, false, mapping, sequence, iterable, even, odd, eq, ne)"),
            };
            return negate ? !r : r;
        }
    }

    // ================================================================== filters and methods

    private static class Filters
    {
        public static object? Apply(Context ctx, Node at, string name, object? v, List<object?> args)
        {
            switch (name)
            {
                case "trim": return Methods.Strip(AsString(ctx, at, v, name), args.Count > 0 ? args[0] as string : null, true, true);
                case "length" or "count":
                    return v switch
                    {
                        string s => (long)s.Length, List<object?> l => (long)l.Count, Dictionary<string, object?> d => (long)d.Count,
                        Undefined => 0L,
                        _ => throw ctx.Error(at, $"'{name}' needs a string, list or dict, got {TypeName(v)}"),
                    };
                case "upper": return AsString(ctx, at, v, name).ToUpperInvariant();
                case "lower": return AsString(ctx, at, v, name).ToLowerInvariant();
                case "title": return Methods.Title(AsString(ctx, at, v, name));
                case "capitalize": { var s = AsString(ctx, at, v, name); return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant(); }
                case "default" or "d":
                {
                    bool boolean = args.Count > 1 && Truthy(args[1]);
                    return v is Undefined || (boolean && !Truthy(v)) ? (args.Count > 0 ? args[0] : "") : v;
                }
                case "first": return Iterate(ctx, at, v) is { Count: > 0 } f ? f[0] : new Undefined("the first item of an empty sequence");
                case "last": return Iterate(ctx, at, v) is { Count: > 0 } l2 ? l2[^1] : new Undefined("the last item of an empty sequence");
                case "join": return string.Join(args.Count > 0 ? Str(args[0]) : "", Iterate(ctx, at, v).Select(Str));
                case "string": return Str(v);
                case "int":
                    return v switch
                    {
                        long l => l, bool b => b ? 1L : 0L, double d => (long)Math.Truncate(d),
                        string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long p) => p,
                        _ => args.Count > 0 ? args[0] : 0L,
                    };
                case "list": return Iterate(ctx, at, v).ToList();
                case "reverse": return v is string rs ? new string(rs.Reverse().ToArray()) : Enumerable.Reverse(Iterate(ctx, at, v)).ToList();
                case "tojson": return Json(v);
                case "replace":
                    if (args.Count < 2) throw ctx.Error(at, "replace(old, new) takes two arguments");
                    return AsString(ctx, at, v, name).Replace(Str(args[0]), Str(args[1]), StringComparison.Ordinal);
                case "safe": return v;
                default:
                    throw ctx.Error(at, $"unknown filter '{name}' (supported: trim, length, count, upper, lower, title, capitalize, default, first, last, join, string, int, list, reverse, tojson, replace, safe)");
            }
        }

        private static string AsString(Context ctx, Node at, object? v, string filter) =>
            v switch { string s => s, Undefined => "", _ => Str(v) };
    }

    private static class Methods
    {
        public static Callable? String(string s, string method) => method switch
        {
            "strip" => (_, _, a, _) => Strip(s, Arg(a), true, true),
            "lstrip" => (_, _, a, _) => Strip(s, Arg(a), true, false),
            "rstrip" => (_, _, a, _) => Strip(s, Arg(a), false, true),
            "upper" => (_, _, _, _) => s.ToUpperInvariant(),
            "lower" => (_, _, _, _) => s.ToLowerInvariant(),
            "title" => (_, _, _, _) => Title(s),
            "startswith" => (ctx, at, a, _) => Affix(ctx, at, a, p => s.StartsWith(p, StringComparison.Ordinal)),
            "endswith" => (ctx, at, a, _) => Affix(ctx, at, a, p => s.EndsWith(p, StringComparison.Ordinal)),
            "split" => (_, _, a, _) => (Arg(a) is { } sep ? s.Split(sep) : s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
                .Select(x => (object?)x).ToList(),
            "replace" => (ctx, at, a, _) => a.Count >= 2 ? s.Replace(Str(a[0]), Str(a[1]), StringComparison.Ordinal) : throw ctx.Error(at, "replace(old, new) takes two arguments"),
            _ => null,
        };

        public static Callable? Dict(Dictionary<string, object?> d, string method) => method switch
        {
            "items" => (_, _, _, _) => d.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList(),
            "keys" => (_, _, _, _) => d.Keys.Select(k => (object?)k).ToList(),
            "values" => (_, _, _, _) => d.Values.ToList(),
            "get" => (_, _, a, _) => a.Count > 0 && a[0] is string k && d.TryGetValue(k, out var v) ? v : a.Count > 1 ? a[1] : null,
            _ => null,
        };

        private static string? Arg(List<object?> a) => a.Count > 0 ? a[0] as string : null;

        private static object Affix(Context ctx, Node at, List<object?> a, Func<string, bool> test) => a.Count > 0 ? a[0] switch
        {
            string p => test(p),
            List<object?> l => l.Any(x => x is string p && test(p)),
            _ => throw ctx.Error(at, "startswith/endswith take a string"),
        } : throw ctx.Error(at, "startswith/endswith take a string");

        /// <summary>Python's str.strip: whitespace, or the given characters.</summary>
        public static string Strip(string s, string? chars, bool left, bool right)
        {
            Func<char, bool> strip = chars is null ? char.IsWhiteSpace : chars.Contains;
            int a = 0, b = s.Length;
            if (left) while (a < b && strip(s[a])) a++;
            if (right) while (b > a && strip(s[b - 1])) b--;
            return s[a..b];
        }

        public static string Title(string s)
        {
            var sb = new StringBuilder(s.Length);
            bool start = true;
            foreach (char c in s)
            {
                sb.Append(start ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
                start = !char.IsLetterOrDigit(c);
            }
            return sb.ToString();
        }
    }

    // ================================================================== parser

    private sealed class Parser(List<Piece> pieces, string source, string name)
    {
        private int index;
        private List<Tok> toks = [];
        private int t;
        private int tagOffset;

        private ChatTemplateException Error(int offset, string what)
        {
            var (line, col) = Position(source, offset);
            return new ChatTemplateException($"{name} line {line}, column {col}: {what}");
        }

        /// <summary>Parses pieces until a statement whose keyword is in <paramref name="ends"/>; returns that keyword in <paramref name="end"/>.</summary>
        public List<Stmt> ParseBody(string[] ends, out string? end)
        {
            var body = new List<Stmt>();
            while (index < pieces.Count)
            {
                var p = pieces[index++];
                switch (p.Kind)
                {
                    case PieceKind.Text: body.Add(new TextStmt(p.Offset, p.Text)); break;
                    case PieceKind.Output:
                        Begin(p);
                        if (toks.Count == 0) throw Error(p.Offset, "empty expression {{ }}");
                        body.Add(new OutputStmt(p.Offset, Expression()));
                        ExpectEnd();
                        break;
                    default:
                        Begin(p);
                        if (toks.Count == 0 || toks[0].Kind != TokKind.Name) throw Error(p.Offset, "expected a statement name after {%");
                        string kw = toks[0].Text;
                        if (ends.Contains(kw)) { end = kw; return body; }
                        t = 1;
                        body.Add(Statement(kw, p.Offset));
                        break;
                }
            }
            if (ends.Length > 0) throw Error(source.Length, $"unexpected end of template: expected {{% {string.Join(" %} or {% ", ends)} %}}");
            end = null;
            return body;
        }

        private void Begin(Piece p)
        {
            toks = p.Tokens;
            t = 0;
            tagOffset = p.Offset;
        }

        private Stmt Statement(string kw, int offset)
        {
            switch (kw)
            {
                case "if":
                {
                    var branches = new List<(Expr, List<Stmt>)>();
                    var cond = Expression();
                    ExpectEnd();
                    while (true)
                    {
                        var body = ParseBody(["elif", "else", "endif"], out var end);
                        branches.Add((cond, body));
                        if (end == "elif") { t = 1; cond = Expression(); ExpectEnd(); continue; }
                        if (end == "else")
                        {
                            t = 1; ExpectEnd();
                            var orElse = ParseBody(["endif"], out _);
                            t = 1; ExpectEnd();
                            return new IfStmt(offset, branches, orElse);
                        }
                        t = 1; ExpectEnd();
                        return new IfStmt(offset, branches, null);
                    }
                }
                case "for":
                {
                    var targets = new List<string> { Name("a loop variable") };
                    while (AcceptOp(",")) targets.Add(Name("a loop variable"));
                    if (!AcceptName("in")) throw Error(Here(), "expected 'in' in the for statement");
                    var iterable = Or();                    // like Jinja: no ternary here, so "for x in y if cond" is rejected below
                    if (t < toks.Count && toks[t].Kind == TokKind.Name && toks[t].Text is "if" or "recursive")
                        throw Error(toks[t].Offset, $"'for … {toks[t].Text}' is not supported");
                    ExpectEnd();
                    var body = ParseBody(["else", "endfor"], out var end);
                    List<Stmt>? orElse = null;
                    if (end == "else") { t = 1; ExpectEnd(); orElse = ParseBody(["endfor"], out _); }
                    t = 1; ExpectEnd();
                    return new ForStmt(offset, targets, iterable, body, orElse);
                }
                case "set":
                {
                    string target = Name("a variable name");
                    string? attr = null;
                    if (AcceptOp(".")) attr = Name("an attribute name");
                    if (t < toks.Count && toks[t].Text == ",") throw Error(toks[t].Offset, "tuple assignment in set is not supported");
                    if (!AcceptOp("=")) throw Error(Here(), "block assignment {% set x %}…{% endset %} is not supported; write {% set x = … %}");
                    var value = Expression();
                    ExpectEnd();
                    return new SetStmt(offset, target, attr, value);
                }
                case "break" or "continue":
                    ExpectEnd();
                    return new LoopControlStmt(offset, kw == "break" ? Flow.Break : Flow.Continue);
                case "generation":
                {
                    ExpectEnd();
                    var body = ParseBody(["endgeneration"], out _);
                    t = 1; ExpectEnd();
                    return new BlockStmt(offset, body);
                }
                default:
                    throw Error(offset, $"unsupported statement '{{% {kw} %}}' (supported: if/elif/else, for, set, break, continue, generation)");
            }
        }

        private int Here() => t < toks.Count ? toks[t].Offset : tagOffset;

        private void ExpectEnd()
        {
            if (t < toks.Count) throw Error(toks[t].Offset, $"unexpected '{Show(toks[t])}'");
        }

        private static string Show(Tok k) => k.Kind == TokKind.String ? "'" + k.Value + "'" : k.Text;

        private bool AcceptOp(string op)
        {
            if (t < toks.Count && toks[t].Kind == TokKind.Op && toks[t].Text == op) { t++; return true; }
            return false;
        }

        private bool AcceptName(string n)
        {
            if (t < toks.Count && toks[t].Kind == TokKind.Name && toks[t].Text == n) { t++; return true; }
            return false;
        }

        private void ExpectOp(string op)
        {
            if (!AcceptOp(op)) throw Error(Here(), t < toks.Count ? $"expected '{op}', got '{Show(toks[t])}'" : $"expected '{op}' before the end of the tag");
        }

        private string Name(string what)
        {
            if (t < toks.Count && toks[t].Kind == TokKind.Name) return toks[t++].Text;
            throw Error(Here(), $"expected {what}");
        }

        private Expr Expression()
        {
            var e = Or();
            if (t < toks.Count && toks[t].Kind == TokKind.Name && toks[t].Text == "if")
            {
                int off = toks[t++].Offset;
                var cond = Or();
                Expr? orElse = AcceptName("else") ? Expression() : null;
                return new CondExpr(off, e, cond, orElse);
            }
            return e;
        }

        private Expr Or()
        {
            var e = And();
            while (t < toks.Count && toks[t].Kind == TokKind.Name && toks[t].Text == "or") { int off = toks[t++].Offset; e = new BinaryExpr(off, "or", e, And()); }
            return e;
        }

        private Expr And()
        {
            var e = Not();
            while (t < toks.Count && toks[t].Kind == TokKind.Name && toks[t].Text == "and") { int off = toks[t++].Offset; e = new BinaryExpr(off, "and", e, Not()); }
            return e;
        }

        private Expr Not()
        {
            if (t < toks.Count && toks[t].Kind == TokKind.Name && toks[t].Text == "not") { int off = toks[t++].Offset; return new UnaryExpr(off, "not", Not()); }
            return Compare();
        }

        private Expr Compare()
        {
            var e = Math1();
            while (t < toks.Count)
            {
                var k = toks[t];
                string? op = k.Kind == TokKind.Op && k.Text is "==" or "!=" or "<" or ">" or "<=" or ">=" ? k.Text
                    : k.Kind == TokKind.Name && k.Text == "in" ? "in"
                    : k.Kind == TokKind.Name && k.Text == "not" && t + 1 < toks.Count && toks[t + 1].Kind == TokKind.Name && toks[t + 1].Text == "in" ? "not in"
                    : null;
                if (op is null) break;
                t += op == "not in" ? 2 : 1;
                e = new BinaryExpr(k.Offset, op, e, Math1());
            }
            return e;
        }

        private Expr Math1()
        {
            var e = Concat();
            while (t < toks.Count && toks[t].Kind == TokKind.Op && toks[t].Text is "+" or "-") { var k = toks[t++]; e = new BinaryExpr(k.Offset, k.Text, e, Concat()); }
            return e;
        }

        private Expr Concat()
        {
            var e = Math2();
            while (t < toks.Count && toks[t].Kind == TokKind.Op && toks[t].Text == "~") { var k = toks[t++]; e = new BinaryExpr(k.Offset, "~", e, Math2()); }
            return e;
        }

        private Expr Math2()
        {
            var e = Pow();
            while (t < toks.Count && toks[t].Kind == TokKind.Op && toks[t].Text is "*" or "/" or "//" or "%") { var k = toks[t++]; e = new BinaryExpr(k.Offset, k.Text, e, Pow()); }
            return e;
        }

        private Expr Pow()
        {
            var e = Unary(true);
            while (t < toks.Count && toks[t].Kind == TokKind.Op && toks[t].Text == "**") { var k = toks[t++]; e = new BinaryExpr(k.Offset, "**", e, Unary(true)); }
            return e;
        }

        private Expr Unary(bool withFilter)
        {
            Expr e;
            if (t < toks.Count && toks[t].Kind == TokKind.Op && toks[t].Text is "-" or "+")
            {
                var k = toks[t++];
                e = new UnaryExpr(k.Offset, k.Text, Unary(false));
            }
            else e = Primary();
            e = Postfix(e);
            return withFilter ? FilterTail(e) : e;
        }

        private Expr Primary()
        {
            if (t >= toks.Count) throw Error(tagOffset, "expected an expression before the end of the tag");
            var k = toks[t++];
            switch (k.Kind)
            {
                case TokKind.String:
                {
                    var s = (string)k.Value!;
                    while (t < toks.Count && toks[t].Kind == TokKind.String) s += (string)toks[t++].Value!;   // adjacent literals join
                    return new Literal(k.Offset, s);
                }
                case TokKind.Int or TokKind.Float: return new Literal(k.Offset, k.Value);
                case TokKind.Name:
                    return k.Text switch
                    {
                        "true" or "True" => new Literal(k.Offset, true),
                        "false" or "False" => new Literal(k.Offset, false),
                        "none" or "None" => new Literal(k.Offset, null),
                        _ => new NameExpr(k.Offset, k.Text),
                    };
            }
            switch (k.Text)
            {
                case "(":
                {
                    var e = Expression();
                    if (AcceptOp(",")) throw Error(k.Offset, "tuples are not supported; use a list [a, b]");
                    ExpectOp(")");
                    return e;
                }
                case "[":
                {
                    var items = new List<Expr>();
                    while (!AcceptOp("]"))
                    {
                        items.Add(Expression());
                        if (!AcceptOp(",")) { ExpectOp("]"); break; }
                    }
                    return new ListExpr(k.Offset, items);
                }
                case "{":
                {
                    var items = new List<(Expr, Expr)>();
                    while (!AcceptOp("}"))
                    {
                        var key = Expression();
                        ExpectOp(":");
                        items.Add((key, Expression()));
                        if (!AcceptOp(",")) { ExpectOp("}"); break; }
                    }
                    return new DictExpr(k.Offset, items);
                }
            }
            throw Error(k.Offset, $"unexpected '{Show(k)}'");
        }

        private Expr Postfix(Expr e)
        {
            while (t < toks.Count && toks[t].Kind == TokKind.Op)
            {
                var k = toks[t];
                if (k.Text == ".")
                {
                    t++;
                    if (t < toks.Count && toks[t].Kind == TokKind.Int) { e = new GetItem(k.Offset, e, new Literal(toks[t].Offset, toks[t].Value)); t++; }
                    else e = new GetAttr(k.Offset, e, Name("an attribute name after '.'"));
                }
                else if (k.Text == "[")
                {
                    t++;
                    Expr? a = null, b = null, c = null;
                    if (!(t < toks.Count && toks[t].Text == ":")) a = Expression();
                    if (AcceptOp(":"))
                    {
                        if (!(t < toks.Count && toks[t].Text is "]" or ":")) b = Expression();
                        if (AcceptOp(":") && !(t < toks.Count && toks[t].Text == "]")) c = Expression();
                        ExpectOp("]");
                        e = new SliceExpr(k.Offset, e, a, b, c);
                    }
                    else
                    {
                        ExpectOp("]");
                        e = new GetItem(k.Offset, e, a ?? throw Error(k.Offset, "empty index []"));
                    }
                }
                else if (k.Text == "(") e = Call(e);
                else break;
            }
            return e;
        }

        private Expr Call(Expr callee)
        {
            int off = toks[t].Offset;
            var (args, kwargs) = Arguments();
            return new CallExpr(off, callee, args, kwargs);
        }

        /// <summary>"(a, b, name=c)" → positional and keyword argument expressions.</summary>
        private (List<Expr> args, List<(string, Expr)> kwargs) Arguments()
        {
            ExpectOp("(");
            var args = new List<Expr>();
            var kwargs = new List<(string, Expr)>();
            while (!AcceptOp(")"))
            {
                if (t + 1 < toks.Count && toks[t].Kind == TokKind.Name && toks[t + 1].Kind == TokKind.Op && toks[t + 1].Text == "=")
                {
                    string n = toks[t].Text;
                    t += 2;
                    kwargs.Add((n, Expression()));
                }
                else
                {
                    if (kwargs.Count > 0) throw Error(Here(), "positional argument after a keyword argument");
                    args.Add(Expression());
                }
                if (!AcceptOp(",")) { ExpectOp(")"); break; }
            }
            return (args, kwargs);
        }

        private Expr FilterTail(Expr e)
        {
            while (t < toks.Count)
            {
                var k = toks[t];
                if (k.Kind == TokKind.Op && k.Text == "|")
                {
                    t++;
                    string f = Name("a filter name after '|'");
                    var args = new List<Expr>();
                    if (t < toks.Count && toks[t].Text == "(")
                    {
                        var (a, kw) = Arguments();
                        if (kw.Count > 0) throw Error(k.Offset, $"keyword arguments to filters are not supported ('{f}')");
                        args = a;
                    }
                    e = new FilterExpr(k.Offset, e, f, args);
                }
                else if (k.Kind == TokKind.Name && k.Text == "is")
                {
                    t++;
                    bool negate = AcceptName("not");
                    string test = t < toks.Count && toks[t].Kind == TokKind.Name ? toks[t++].Text
                        : t < toks.Count && toks[t].Kind == TokKind.Op && toks[t].Text is "==" or "!=" ? toks[t++].Text
                        : throw Error(Here(), "expected a test name after 'is'");
                    var args = new List<Expr>();
                    if (t < toks.Count && toks[t].Text == "(") args = Arguments().args;
                    else if (t < toks.Count && (toks[t].Kind is TokKind.String or TokKind.Int or TokKind.Float
                             || (toks[t].Kind == TokKind.Name && toks[t].Text is not ("and" or "or" or "if" or "else" or "in" or "not" or "is"))))
                        args = [Primary()];                          // "is divisibleby 3", "is eq 'x'" style
                    e = new TestExpr(k.Offset, e, test, negate, args);
                }
                else if (k.Kind == TokKind.Op && k.Text == "(") e = Call(e);
                else break;
            }
            return e;
        }

    }
}
