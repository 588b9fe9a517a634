/* The baseline's /init: power off at once. What a boot costs with nothing to do. */
#include <sys/reboot.h>
#include <unistd.h>

int main(void)
{
	sync();
	reboot(RB_POWER_OFF);
	return 1;
}
