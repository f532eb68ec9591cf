/* no_symbol -- a test plugin that exports no mr_plugin_v1 at all (say, a
 * library passed as --plugin by mistake). */
__attribute__((visibility("default"))) int not_a_plugin(int x);

int not_a_plugin(int x)
{
    return x + 1;
}
