import FulcrumStore
import Testing

@Suite("Splitting migration files into statements")
struct SQLStatementsTests {
    @Test func splitsOnSemicolonsAndDropsComments() {
        let sql = """
            -- a comment; with a semicolon
            CREATE TABLE a (id int);
            /* block; /* nested; */ still comment */
            CREATE INDEX a_id ON a (id);

            """
        #expect(SQLStatements.split(sql) == ["CREATE TABLE a (id int)", "CREATE INDEX a_id ON a (id)"])
    }

    @Test func keepsSemicolonsInsideQuotesAndDollarQuotes() {
        let sql = """
            INSERT INTO t VALUES ('a;b', 'it''s; fine');
            CREATE TABLE "odd;name" (x int);
            CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;
            SELECT $$;$$, $1
            """
        #expect(
            SQLStatements.split(sql) == [
                "INSERT INTO t VALUES ('a;b', 'it''s; fine')",
                #"CREATE TABLE "odd;name" (x int)"#,
                "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql",
                "SELECT $$;$$, $1",
            ])
    }

    @Test func emptyAndCommentOnlyInputHasNoStatements() {
        #expect(SQLStatements.split("").isEmpty)
        #expect(SQLStatements.split("  ;\n -- nothing\n;").isEmpty)
    }
}
